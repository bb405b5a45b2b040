/**
 * Error codes of `attestors/`. TPM response codes become `TpmResponseError` (see
 * `tpm/wire/rc.ts`), which carries the decoded code; everything else is an `AttestorError`.
 */
import { EdgewardError } from '../runtime/core/error.ts';

export type AttestorErrorCode =
  /** A TPM answered with a non-zero response code. */
  | 'ERR_TPM_RESPONSE'
  /** A TPM response (or command, in the simulator) could not be parsed: truncated, oversized, wrong tag. */
  | 'ERR_TPM_MALFORMED'
  /** The transport failed: device or socket error, closed, or no answer within the timeout. */
  | 'ERR_TPM_TRANSPORT'
  /** The TPM gave no answer within the per-command timeout. */
  | 'ERR_TPM_TIMEOUT'
  /** A transport string that names no known transport. */
  | 'ERR_TPM_TRANSPORT_SPEC'
  /** An EK was not found, or its certificate could not be read or parsed. */
  | 'ERR_TPM_EK_MISSING'
  /** The attestor was used after close or before start, or started twice. */
  | 'ERR_ATTESTOR_CLOSED'
  /** An argument outside the attestor's contract: a challenge nonce under 16 bytes, sealed data not 1 to 128 bytes, a PCR index outside 0..23 or an expected PCR value missing or not 32 bytes. */
  | 'ERR_ATTESTOR_INPUT'
  /** The attestor was asked for something its `supports` manifest says it cannot do. */
  | 'ERR_ATTESTOR_UNSUPPORTED'
  /** Verifier side: a quote, credential or public area that does not check out. */
  | 'ERR_ATTEST_QUOTE_INVALID'
  /** An AK or EK public area that is malformed or not of the required template and attributes. */
  | 'ERR_ATTEST_PUBLIC_INVALID'
  /** Credential activation failed, or the activated secret does not match. */
  | 'ERR_ATTEST_CREDENTIAL'
  /** Verifier side: EK certificate bytes that are not one DER certificate (after header/padding). */
  | 'ERR_ATTEST_EK_CERT_INVALID'
  /** Verifier side: the EK certificate does not chain to a configured manufacturer root at `now`. */
  | 'ERR_ATTEST_EK_CHAIN'
  /** The TPM is unusable for this operation (missing command result, resource exhausted, bad state). */
  | 'ERR_TPM_STATE'
  /** Attestor configuration: a join token, certificate or key file that is missing or unusable. */
  | 'ERR_ATTESTOR_CONFIG'
  /** A sealed blob that is not one this attestor produced (truncated, wrong version, wrong TPM). */
  | 'ERR_ATTESTOR_SEALED_BLOB'
  /** A TPM signing-key blob that is not one this TPM made (garbage, wrong version, another TPM or owner seed). */
  | 'ERR_ATTESTOR_KEY_BLOB'
  /** Sealed data whose PCR policy is no longer met (firmware or boot chain changed). */
  | 'ERR_ATTESTOR_PCR_POLICY';

export class AttestorError extends EdgewardError<AttestorErrorCode> {}
