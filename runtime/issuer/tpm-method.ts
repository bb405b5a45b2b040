/**
 * tpm attestation, verifier side, on top of `attestors/tpm/verify` (ARCHITECTURE.md §3):
 * begin checks the EK certificate chain against the manufacturer roots, that the certificate's
 * key is the EK (TCG template), the AK's attributes and algorithm, and makes the credential
 * (bound to the AK's name) with the EK's own name algorithm and symmetric; finish and renewal
 * check the activated secret (constant time), the quote (signature, qualifying data =
 * SHA-256(nonce ‖ CSR SPKI), selection and bank, PCR digest) and the PCR values against the
 * firmware reference values. `tpmBegin`, `tpmFinish` and `tpmRenew` are the issuer's steps for
 * the method (registration lookup, session fields, quote against the gateway's firmware).
 */
import { createHash, timingSafeEqual, type X509Certificate } from 'node:crypto';
import {
  checkAkPublic,
  checkEkPublic,
  makeCredential,
  parseEkCertificate,
  qualifyingData,
  verifyEkChain,
  verifyQuote,
} from '../../attestors/tpm/verify/index.ts';
import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import type { AttestBeginRequest, AttestProof, RenewFinishRequest } from '../upstream/protocol.ts';
import { type IssuerCore, methodDisabled } from './core.ts';
import { manifestsFor } from './firmware.ts';
import { matchReference } from './manifests.ts';
import {
  type GatewayRecord,
  K,
  type ManifestRecord,
  type Registration,
  type SessionRecord,
} from './records.ts';

export interface TpmPolicy {
  readonly manufacturerRoots: readonly X509Certificate[];
  readonly intermediates: readonly X509Certificate[];
  /** The PCRs every quote must cover, e.g. `sha256:0,1,2,7`. */
  readonly pcrSelection: string;
  /** Register unknown EKs whose certificate chains (name `tpm-<EK hash prefix>`). */
  readonly autoRegister: boolean;
  /** `manifests` (default): PCR values must match a signed firmware manifest. `any`: dev only. */
  readonly pcrPolicy: 'manifests' | 'any';
}

/** SHA-256 of the EK's TPMT_PUBLIC, hex: the key registrations use. */
export const ekHash = (ekPublic: Uint8Array): string => createHash('sha256').update(ekPublic).digest('hex');

export interface TpmChallenge {
  readonly credential: Buffer;
  readonly credentialBlob: Buffer;
  readonly encryptedSecret: Buffer;
}

/** Check EK and AK; make the credential challenge. `registered`: the EK hash is registered by an operator. */
export function tpmChallenge(
  req: { ekPublic: Uint8Array; ekCertificate?: Uint8Array; akPublic: Uint8Array },
  policy: TpmPolicy,
  registered: boolean,
  now: number,
  random: Random,
): TpmChallenge {
  if (req.ekCertificate !== undefined) {
    const der = parseEkCertificate(req.ekCertificate);
    checkEkPublic(req.ekPublic, der);
    verifyEkChain(der, policy.manufacturerRoots, policy.intermediates, now);
  } else if (!registered) {
    throw new IssuerError(
      'ERR_ISSUER_CHAIN_INVALID',
      'no EK certificate, and this EK is not registered by hash',
    );
  }
  const ak = checkAkPublic(req.akPublic);
  const credential = random.bytes(32);
  const made = makeCredential(req.ekPublic, ak.name, credential, random);
  return { credential, credentialBlob: made.credentialBlob, encryptedSecret: made.encryptedSecret };
}

export function checkActivatedSecret(expectedHash: Uint8Array, activated: Uint8Array): void {
  const got = createHash('sha256').update(activated).digest();
  if (got.length !== expectedHash.length || !timingSafeEqual(got, expectedHash))
    throw new IssuerError('ERR_ISSUER_CREDENTIAL', 'the activated credential does not match the challenge');
}

/** Verify a quote and its PCR values; returns the matched firmware version (or 'unchecked' under pcrPolicy any). */
export function checkQuote(
  e: {
    akPublic: Uint8Array;
    nonce: Uint8Array;
    csrSpki: Uint8Array;
    quote: Uint8Array;
    signature: Uint8Array;
    pcrValues: readonly Uint8Array[];
  },
  policy: TpmPolicy,
  manifests: readonly ManifestRecord[],
): string {
  verifyQuote({
    akPublic: e.akPublic,
    quote: e.quote,
    signature: e.signature,
    nonce: qualifyingData(e.nonce, e.csrSpki),
    selection: policy.pcrSelection,
    pcrValues: e.pcrValues,
  });
  if (policy.pcrPolicy === 'any') return 'unchecked';
  const version = matchReference(manifests, policy.pcrSelection, e.pcrValues);
  if (version === undefined)
    throw new IssuerError('ERR_ISSUER_PCR_MISMATCH', 'PCR values match no known firmware reference values');
  return version;
}

/** Fill `session` for a tpm attestation and make the credential challenge (begin's extra fields). */
export async function tpmBegin(
  core: IssuerCore,
  req: Extract<AttestBeginRequest, { method: 'tpm' }>,
  session: SessionRecord,
): Promise<{ credentialBlob: Uint8Array; encryptedSecret: Uint8Array; pcrSelection: string }> {
  const p = core.methods.tpm;
  if (p === undefined) throw methodDisabled('tpm');
  const hash = ekHash(req.ekPublic);
  const reg = await core.store.get<Registration>(K.registration('ek', hash));
  const ch = tpmChallenge(req, p, reg !== undefined, core.clock.now(), core.random);
  if (reg === undefined && !p.autoRegister)
    throw new IssuerError('ERR_ISSUER_NOT_REGISTERED', `EK ${hash.slice(0, 16)}… is not registered`);
  session.gateway = reg?.name ?? `tpm-${hash.slice(0, 16)}`;
  if (reg === undefined) session.registerKey = K.registration('ek', hash);
  session.credentialHash = createHash('sha256').update(ch.credential).digest();
  session.akPublic = req.akPublic;
  session.ekHash = hash;
  session.pcrSelection = p.pcrSelection;
  return {
    credentialBlob: ch.credentialBlob,
    encryptedSecret: ch.encryptedSecret,
    pcrSelection: p.pcrSelection,
  };
}

/** Check the activated credential and the quote of an attestation; returns the firmware version. */
export async function tpmFinish(
  core: IssuerCore,
  s: SessionRecord,
  proof: Extract<AttestProof, { method: 'tpm' }>,
  csrSpki: Uint8Array,
): Promise<string> {
  const p = core.methods.tpm;
  if (p === undefined || s.credentialHash === undefined || s.akPublic === undefined)
    throw methodDisabled('tpm');
  checkActivatedSecret(s.credentialHash, proof.activatedSecret);
  return checkQuote(
    { akPublic: s.akPublic, nonce: s.nonce, csrSpki, ...proof },
    p,
    manifestsFor(await core.store.get<GatewayRecord>(K.gateway(s.gateway)), core.manifests()),
  );
}

/**
 * A tpm gateway renews (or recovers) only with a fresh quote by its registered AK: the PCR policy
 * is never bypassed. Returns the firmware version.
 */
export function tpmRenew(
  core: IssuerCore,
  gw: GatewayRecord,
  s: SessionRecord,
  req: Pick<RenewFinishRequest, 'quote' | 'signature' | 'pcrValues'>,
  csrSpki: Uint8Array,
  step: 'renew' | 'recover' = 'renew',
): string {
  const p = core.methods.tpm;
  if (p === undefined) throw methodDisabled('tpm');
  if (
    gw.akPublic === undefined ||
    req.quote === undefined ||
    req.signature === undefined ||
    req.pcrValues === undefined
  )
    throw new IssuerError(
      'ERR_ISSUER_QUOTE_INVALID',
      `a tpm gateway must ${step} with a fresh quote on its AK`,
    );
  return checkQuote(
    {
      akPublic: gw.akPublic,
      nonce: s.nonce,
      csrSpki,
      quote: req.quote,
      signature: req.signature,
      pcrValues: req.pcrValues,
    },
    p,
    manifestsFor(gw, core.manifests()),
  );
}
