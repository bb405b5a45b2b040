/**
 * Verifier side: check a TPM2_Quote (brief §4.5; Part 3 §18.4). Order matters: the signature is
 * checked over the raw TPMS_ATTEST bytes before anything in them is believed, then magic, type,
 * extraData (the expected qualifying data, compared in constant time), the exact PCR selection
 * (an inactive bank "succeeds" with an empty selection, brief §6 P15) and the PCR digest
 * recomputed from the values the client reported.
 *
 * Comparing the PCR values with reference values of known firmware, and the clock against the
 * previous quote of the same AK, is the caller's job (with what this returns).
 *
 * @example
 * ```ts
 * const q = verifyQuote({ akPublic, quote, signature, selection: 'sha256:0,1,2,7', pcrValues,
 *                         nonce: qualifyingData(sessionNonce, csrSpkiDer) });
 * ```
 */
import { constants, timingSafeEqual, verify } from 'node:crypto';
import { AttestorError } from '../../errors.ts';
import { digest } from '../crypto/kdf.ts';
import { type ClockInfo, parseAttest, parseSignature, type TpmtSignature } from '../wire/attest.ts';
import { CURVES, HASHES, TPM_ALG, TPM_ST } from '../wire/constants.ts';
import {
  formatPcrSelection,
  type PcrSelection,
  parsePcrSelection,
  samePcrSelection,
} from '../wire/pcr-selection.ts';
import { checkAkPublic } from './ak-public.ts';

export interface QuoteInput {
  /** TPMT_PUBLIC bytes of the AK (checked with `checkAkPublic`). */
  readonly akPublic: Uint8Array;
  /** TPMS_ATTEST bytes (TPM2B_ATTEST contents). */
  readonly quote: Uint8Array;
  /** TPMT_SIGNATURE bytes. */
  readonly signature: Uint8Array;
  /** The qualifying data expected in `extraData` (for edgeward: `qualifyingData(nonce, csrSpki)`). */
  readonly nonce: Uint8Array;
  /** The selection that was asked for, typed or as `sha256:0,1,2,7`. */
  readonly selection: PcrSelection | string;
  /** PCR values in selection order (ascending index within each bank). */
  readonly pcrValues: readonly Uint8Array[];
}

export interface VerifiedQuote {
  readonly pcrDigest: Buffer;
  readonly clockInfo: ClockInfo;
  readonly firmwareVersion: bigint;
}

function invalid(message: string, cause?: unknown): AttestorError {
  return new AttestorError('ERR_ATTEST_QUOTE_INVALID', `quote: ${message}`, { cause });
}

function checkSignature(sig: TpmtSignature, input: QuoteInput): void {
  const ak = checkAkPublic(input.akPublic);
  const scheme = ak.public.params.type === TPM_ALG.KEYEDHASH ? undefined : ak.public.params.scheme;
  if (scheme === undefined || sig.sigAlg !== scheme.scheme || sig.hash !== scheme.hash)
    throw invalid(`signature scheme 0x${sig.sigAlg.toString(16)} does not match the AK's scheme`);
  const hash = HASHES[sig.hash]?.node;
  if (hash === undefined) throw invalid(`signature hash 0x${sig.hash.toString(16)} unsupported`);
  let ok: boolean;
  try {
    if (sig.sigAlg === TPM_ALG.ECDSA) {
      const params = ak.public.params;
      const size = params.type === TPM_ALG.ECC ? (CURVES[params.curve]?.size ?? 32) : 32;
      if (sig.r.length > size || sig.s.length > size) throw invalid('ECDSA R or S longer than the curve');
      const pad = (b: Uint8Array): Buffer => Buffer.concat([Buffer.alloc(size - b.length), b]);
      ok = verify(
        hash,
        input.quote,
        { key: ak.publicKey, dsaEncoding: 'ieee-p1363' },
        Buffer.concat([pad(sig.r), pad(sig.s)]),
      );
    } else {
      const padding =
        sig.sigAlg === TPM_ALG.RSAPSS ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING;
      ok = verify(hash, input.quote, { key: ak.publicKey, padding }, sig.sig);
    }
  } catch (cause) {
    if (cause instanceof AttestorError) throw cause;
    throw invalid('signature could not be checked', cause);
  }
  if (!ok) throw invalid('signature does not verify with the AK');
}

export function verifyQuote(input: QuoteInput): VerifiedQuote {
  let sig: TpmtSignature;
  try {
    sig = parseSignature(input.signature);
  } catch (cause) {
    throw invalid('TPMT_SIGNATURE does not parse', cause);
  }
  try {
    checkSignature(sig, input);
  } catch (cause) {
    if (cause instanceof AttestorError && cause.code === 'ERR_ATTEST_QUOTE_INVALID') throw cause;
    throw invalid('AK unusable for verification', cause);
  }
  let attest: ReturnType<typeof parseAttest>;
  try {
    attest = parseAttest(input.quote);
  } catch (cause) {
    throw invalid('TPMS_ATTEST does not parse', cause);
  }
  const a = attest.attested;
  if (a.type !== TPM_ST.ATTEST_QUOTE)
    throw invalid(`TPMS_ATTEST type 0x${a.type.toString(16)} is not a quote`);
  const want = Buffer.from(input.nonce);
  if (attest.extraData.length !== want.length || !timingSafeEqual(attest.extraData, want))
    throw invalid('extraData is not the expected qualifying data (stale nonce or other key)');
  const selection =
    typeof input.selection === 'string' ? parsePcrSelection(input.selection) : input.selection;
  if (!samePcrSelection(a.pcrSelect, selection))
    throw invalid(
      `quoted selection '${formatPcrSelection(a.pcrSelect)}' is not the requested '${formatPcrSelection(selection)}'`,
    );
  const sizes = selection.flatMap((b) => b.pcrs.map(() => HASHES[b.hash]?.size));
  if (input.pcrValues.length !== sizes.length)
    throw invalid(`${input.pcrValues.length} PCR values for ${sizes.length} selected PCRs`);
  input.pcrValues.forEach((v, i) => {
    if (v.length !== sizes[i]) throw invalid(`PCR value ${i} has ${v.length} bytes, bank needs ${sizes[i]}`);
  });
  // TPM2_Quote hashes the PCR values with the signing scheme's hash, not the bank's.
  const pcrDigest = digest(sig.hash, ...input.pcrValues);
  if (!pcrDigest.equals(Buffer.from(a.pcrDigest)))
    throw invalid('PCR values do not match the quoted PCR digest');
  return { pcrDigest, clockInfo: attest.clockInfo, firmwareVersion: attest.firmwareVersion };
}
