/**
 * Sealing a small secret (the store's 32-byte data key) to this TPM, optionally to PCR values
 * (brief §5.1, Part 3 §23.7). The parent is the ECC P-256 storage primary, recreated from its
 * template each time (deterministic: same owner seed → same key; a TPM2_Clear invalidates blobs).
 * With PCRs the object has no userWithAuth and authPolicy = PolicyPCR(selection, values): the
 * current values, or the expected values a firmware update promises (computed offline, brief §5.1);
 * without, it is authorised by the empty password. Everything loaded is flushed.
 *
 * Blob (version 1): `u32 "EWS1" ‖ TPML_PCR_SELECTION ‖ TPM2B_PRIVATE ‖ TPM2B_PUBLIC`.
 */
import type { Random } from '../../runtime/core/random.ts';
import { AttestorError } from '../errors.ts';
import { policyAuth } from './client/auth.ts';
import { execute } from './client/execute.ts';
import { flush, readPcrs } from './client/helpers.ts';
import { policyPcr, withPolicySession } from './client/sessions.ts';
import { CreatePrimary } from './commands/hierarchy.ts';
import { Create, Load, Unseal } from './commands/object.ts';
import { emptyPolicy, pcrValuesDigest, policyPcrUpdate } from './crypto/policy.ts';
import type { TpmTransport } from './transport/transport.ts';
import { Reader, Writer } from './wire/buffer.ts';
import { TPM_ALG, TPM_RH, TPMA_OBJECT } from './wire/constants.ts';
import { type PcrSelection, pcrCount, readPcrSelection, writePcrSelection } from './wire/pcr-selection.ts';
import { marshalPublic, parsePublic } from './wire/public.ts';
import { isRc, RC } from './wire/rc.ts';
import { SEALED_ATTRIBUTES, sealedTemplate, srkEccP256Template } from './wire/templates.ts';

const MAGIC = 0x45575331; // "EWS1"
const EMPTY = new Uint8Array();

/** CreatePrimary of the storage primary (the SRK template), `fn` with its handle, then flush it. */
export async function withSrk<T>(t: TpmTransport, fn: (srk: number) => Promise<T>): Promise<T> {
  const srk = await execute(t, CreatePrimary, {
    primaryHandle: TPM_RH.OWNER,
    inSensitive: { userAuth: EMPTY, data: EMPTY },
    inPublic: marshalPublic(srkEccP256Template()),
    outsideInfo: EMPTY,
    creationPCR: [],
  });
  try {
    return await fn(srk.objectHandle);
  } finally {
    await flush(t, srk.objectHandle);
  }
}

export async function sealData(
  t: TpmTransport,
  data: Uint8Array,
  pcrs: readonly number[] = [],
  /** Expected values (index → sha256 digest) to seal to instead of the current ones. */
  expected?: Readonly<Record<number, Uint8Array>>,
): Promise<Buffer> {
  const selection: PcrSelection =
    pcrs.length > 0 ? [{ hash: TPM_ALG.SHA256, pcrs: [...new Set(pcrs)].sort((a, b) => a - b) }] : [];
  let template = { ...sealedTemplate(EMPTY), attributes: SEALED_ATTRIBUTES | TPMA_OBJECT.userWithAuth };
  if (selection.length > 0) {
    const values =
      expected === undefined
        ? await readPcrs(t, selection)
        : (selection[0]?.pcrs ?? []).map((i) => {
            const v = expected[i];
            if (v === undefined || v.length !== 32)
              throw new AttestorError(
                'ERR_ATTESTOR_INPUT',
                `expected value of sha256 PCR ${i} missing or not 32 bytes`,
              );
            return v;
          });
    const policy = policyPcrUpdate(
      TPM_ALG.SHA256,
      emptyPolicy(TPM_ALG.SHA256),
      selection,
      pcrValuesDigest(TPM_ALG.SHA256, values),
    );
    template = sealedTemplate(policy);
  }
  const created = await withSrk(t, (srk) =>
    execute(t, Create, {
      parentHandle: srk,
      inSensitive: { userAuth: EMPTY, data },
      inPublic: marshalPublic(template),
      outsideInfo: EMPTY,
      creationPCR: [],
    }),
  );
  const w = new Writer().u32(MAGIC);
  writePcrSelection(w, selection);
  return w.tpm2b(created.outPrivate).tpm2b(created.outPublic).finish();
}

function parseBlob(blob: Uint8Array) {
  try {
    const r = new Reader(blob, 'sealed blob');
    if (r.u32('magic') !== MAGIC)
      throw new AttestorError('ERR_ATTESTOR_SEALED_BLOB', 'not an edgeward sealed blob (v1)');
    const selection = readPcrSelection(r);
    const priv = r.tpm2b('private', 1024);
    const pub = r.tpm2b('public', 1024);
    r.done('sealed blob');
    const p = parsePublic(pub);
    if (p.type !== TPM_ALG.KEYEDHASH || (p.attributes & SEALED_ATTRIBUTES) !== SEALED_ATTRIBUTES)
      throw new AttestorError('ERR_ATTESTOR_SEALED_BLOB', 'sealed blob does not hold a sealed data object');
    return { selection, priv, pub };
  } catch (cause) {
    if (cause instanceof AttestorError && cause.code === 'ERR_ATTESTOR_SEALED_BLOB') throw cause;
    throw new AttestorError('ERR_ATTESTOR_SEALED_BLOB', 'sealed blob is malformed', { cause });
  }
}

export async function unsealData(t: TpmTransport, blob: Uint8Array, random: Random): Promise<Buffer> {
  const { selection, priv, pub } = parseBlob(blob);
  return withSrk(t, async (srk) => {
    let item: number;
    try {
      item = (await execute(t, Load, { parentHandle: srk, inPrivate: priv, inPublic: pub })).objectHandle;
    } catch (cause) {
      throw new AttestorError(
        'ERR_ATTESTOR_SEALED_BLOB',
        'the TPM refused the sealed blob (another TPM, or its owner was cleared)',
        { cause },
      );
    }
    try {
      if (pcrCount(selection) === 0)
        return Buffer.from((await execute(t, Unseal, { itemHandle: item })).outData);
      return await withPolicySession(t, random, async (s) => {
        await policyPcr(t, s, selection);
        try {
          return Buffer.from(
            (await execute(t, Unseal, { itemHandle: item }, [policyAuth(s.handle)])).outData,
          );
        } catch (cause) {
          if (isRc(cause, RC.POLICY_FAIL))
            throw new AttestorError(
              'ERR_ATTESTOR_PCR_POLICY',
              'the PCR values the data was sealed to have changed',
              { cause },
            );
          throw cause;
        }
      });
    } finally {
      await flush(t, item);
    }
  });
}
