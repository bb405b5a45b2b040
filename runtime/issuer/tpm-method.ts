/**
 * tpm attestation, verifier side, on top of `attestors/tpm/verify` (ARCHITECTURE.md §3):
 * begin checks the EK certificate chain against the manufacturer roots, that the certificate's
 * key is the EK (TCG template), the AK's attributes and algorithm, and makes the credential
 * (bound to the AK's name) with the EK's own name algorithm and symmetric; finish and renewal
 * check the activated secret (constant time), the quote (signature, qualifying data =
 * SHA-256(nonce ‖ CSR SPKI), selection and bank, PCR digest) and the PCR values against the
 * firmware reference values.
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
import { matchReference } from './manifests.ts';
import type { ManifestRecord } from './records.ts';

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
