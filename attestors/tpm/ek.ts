/**
 * Finding the endorsement keys (brief §2.3, §3.6, §3.8, §6 P7): enumerate the EK certificate NV
 * indices that exist (L-1 RSA-2048, L-2 ECC P-256, H-3 ECC P-384), read and parse each certificate,
 * and find its key among the persistent handles (checked with the verifier's `checkEkPublic`), or
 * else recreate it from its template with CreatePrimary (deterministic) — never assume
 * 0x81010001/0x81010002. A TPM without any EK certificate still gets an ECC L-2 EK, uncertified.
 * `findEks` lists them all (`edgeward tpm ek`); `findEk` stops at the first (the attestor).
 */
import { AttestorError } from '../errors.ts';
import { execute } from './client/execute.ts';
import { flush, listHandles, readNv } from './client/helpers.ts';
import { CreatePrimary } from './commands/hierarchy.ts';
import { ReadPublic } from './commands/object.ts';
import type { TpmTransport } from './transport/transport.ts';
import { parseEkCertificate } from './verify/ek-certificate.ts';
import { checkEkPublic, type EkTemplateName } from './verify/ek-public.ts';
import { EK_NV, TPM_RH } from './wire/constants.ts';
import { parsePcrSelection } from './wire/pcr-selection.ts';
import { marshalPublic, type TpmtPublic } from './wire/public.ts';
import { ekEccP256Template, ekEccP384Template, ekRsa2048Template } from './wire/templates.ts';

export interface EkInfo {
  readonly template: EkTemplateName;
  /** TPMT_PUBLIC bytes. */
  readonly public: Buffer;
  readonly certificate?: Buffer;
  /** The persistent handle holding it, if any (else it is recreated per use). */
  readonly persistentHandle?: number;
}

const TEMPLATES: Record<EkTemplateName, { nv: number; template: () => TpmtPublic }> = {
  'L-1': { nv: EK_NV.RSA2048_CERT, template: ekRsa2048Template },
  'L-2': { nv: EK_NV.ECC_P256_CERT, template: ekEccP256Template },
  'H-3': { nv: EK_NV.ECC_P384_H3_CERT, template: ekEccP384Template },
};

/** Low-range EKs (policy A) need PolicySecret(ENDORSEMENT); high-range ones accept the password. */
export function ekNeedsPolicySecret(t: EkTemplateName): boolean {
  return t !== 'H-3';
}

const NO_PCRS = parsePcrSelection('sha256:0').map((b) => ({ ...b, pcrs: [] }));

/** CreatePrimary(ENDORSEMENT, template): a transient EK the caller must flush. */
export async function createEk(t: TpmTransport, template: EkTemplateName) {
  return execute(t, CreatePrimary, {
    primaryHandle: TPM_RH.ENDORSEMENT,
    inSensitive: { userAuth: new Uint8Array(), data: new Uint8Array() },
    inPublic: marshalPublic(TEMPLATES[template].template()),
    outsideInfo: new Uint8Array(),
    creationPCR: NO_PCRS,
  });
}

async function publicOf(
  t: TpmTransport,
  template: EkTemplateName,
  persistent: readonly number[],
  cert: Buffer,
) {
  for (const h of persistent) {
    const { outPublic } = await execute(t, ReadPublic, { objectHandle: h });
    try {
      if (checkEkPublic(outPublic, cert).template === template)
        return { public: Buffer.from(outPublic), persistentHandle: h };
    } catch {
      // another key: keep looking
    }
  }
  const created = await createEk(t, template);
  await flush(t, created.objectHandle);
  try {
    checkEkPublic(created.outPublic, cert);
  } catch (cause) {
    throw new AttestorError('ERR_TPM_EK_MISSING', `EK ${template} does not match its certificate`, { cause });
  }
  return { public: Buffer.from(created.outPublic) };
}

const DEFAULT_PREFERENCE: readonly EkTemplateName[] = ['L-2', 'L-1', 'H-3'];

/** The certified EKs in `preference` order, each read (certificate, public area) only when asked for. */
async function* certifiedEks(t: TpmTransport, preference: readonly EkTemplateName[]): AsyncGenerator<EkInfo> {
  const nv = new Set(await listHandles(t, 0x01000000));
  const persistent = (await listHandles(t, 0x81000000)).filter((h) => h >= 0x81010000 && h <= 0x810100ff);
  for (const template of preference) {
    const index = TEMPLATES[template].nv;
    if (!nv.has(index)) continue;
    let certificate: Buffer;
    try {
      certificate = parseEkCertificate(await readNv(t, index));
    } catch (cause) {
      throw new AttestorError(
        'ERR_TPM_EK_MISSING',
        `EK certificate at NV 0x${index.toString(16)} unreadable`,
        {
          cause,
        },
      );
    }
    yield { template, certificate, ...(await publicOf(t, template, persistent, certificate)) };
  }
}

/** The EK to use when no certificate exists: ECC L-2, uncertified. */
async function uncertifiedEk(t: TpmTransport): Promise<EkInfo> {
  const created = await createEk(t, 'L-2');
  await flush(t, created.objectHandle);
  return { template: 'L-2', public: Buffer.from(created.outPublic) };
}

/** Every EK with a certificate, in `preference` order; an uncertified L-2 EK when there is none. */
export async function findEks(
  t: TpmTransport,
  preference: readonly EkTemplateName[] = DEFAULT_PREFERENCE,
): Promise<EkInfo[]> {
  const out: EkInfo[] = [];
  for await (const ek of certifiedEks(t, preference)) out.push(ek);
  return out.length > 0 ? out : [await uncertifiedEk(t)];
}

/**
 * The first EK of `findEks` without reading the others: their certificates are not read and no
 * unpersisted one is recreated (an RSA CreatePrimary can take seconds on a hardware TPM).
 */
export async function findEk(
  t: TpmTransport,
  preference: readonly EkTemplateName[] = DEFAULT_PREFERENCE,
): Promise<EkInfo> {
  for await (const ek of certifiedEks(t, preference)) return ek;
  return uncertifiedEk(t);
}

/** A handle for the EK: its persistent handle, or a fresh transient one (`transient` true: flush it). */
export async function loadEk(t: TpmTransport, ek: EkInfo): Promise<{ handle: number; transient: boolean }> {
  if (ek.persistentHandle !== undefined) return { handle: ek.persistentHandle, transient: false };
  const created = await createEk(t, ek.template);
  if (!Buffer.from(created.outPublic).equals(ek.public)) {
    await flush(t, created.objectHandle);
    throw new AttestorError('ERR_TPM_EK_MISSING', 'the endorsement hierarchy no longer gives the same EK');
  }
  return { handle: created.objectHandle, transient: true };
}
