/**
 * Verifier side: is this public area an attestation key we accept? (brief §3.13, §4.5;
 * ARCHITECTURE.md §3 step 2). An AK must be a TPM-resident, TPM-generated, restricted signing key:
 * fixedTPM, fixedParent, sensitiveDataOrigin, restricted and sign set, decrypt clear; ECC P-256 with
 * ECDSA-SHA256, or RSA of at least 2048 bits with RSASSA/RSAPSS-SHA256.
 *
 * @example
 * ```ts
 * const { name, publicKey } = checkAkPublic(begin.akPublic); // name binds MakeCredential
 * ```
 */
import type { KeyObject } from 'node:crypto';
import { AttestorError } from '../../errors.ts';
import { objectName, publicKeyOf } from '../crypto/name.ts';
import { HASHES, TPM_ALG, TPM_ECC, TPMA_OBJECT } from '../wire/constants.ts';
import { parsePublic, type TpmtPublic } from '../wire/public.ts';

export interface CheckedAk {
  /** nameAlg ‖ H(TPMT_PUBLIC): computed here, never taken from the client. */
  readonly name: Buffer;
  readonly publicKey: KeyObject;
  readonly public: TpmtPublic;
}

const REQUIRED =
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin |
  TPMA_OBJECT.restricted |
  TPMA_OBJECT.sign;

function invalid(message: string, cause?: unknown): AttestorError {
  return new AttestorError('ERR_ATTEST_PUBLIC_INVALID', `AK public area: ${message}`, { cause });
}

export function checkAkPublic(akPublic: Uint8Array): CheckedAk {
  let pub: TpmtPublic;
  try {
    pub = parsePublic(akPublic);
  } catch (cause) {
    throw invalid('does not parse as TPMT_PUBLIC', cause);
  }
  if (HASHES[pub.nameAlg] === undefined || pub.nameAlg === TPM_ALG.SHA1)
    throw invalid(`nameAlg 0x${pub.nameAlg.toString(16)} is not SHA-256/384/512`);
  // Part 2 §8.3.3: a restricted signing key signs only digests the TPM computed itself.
  if ((pub.attributes & REQUIRED) !== REQUIRED)
    throw invalid(
      `attributes 0x${pub.attributes.toString(16)} lack fixedTPM/fixedParent/sensitiveDataOrigin/restricted/sign`,
    );
  if (pub.attributes & TPMA_OBJECT.decrypt) throw invalid('a signing AK must not also decrypt');
  const p = pub.params;
  if (p.type === TPM_ALG.ECC) {
    if (p.curve !== TPM_ECC.NIST_P256) throw invalid(`curve 0x${p.curve.toString(16)} is not NIST P-256`);
    if (p.scheme.scheme !== TPM_ALG.ECDSA || p.scheme.hash !== TPM_ALG.SHA256)
      throw invalid('ECC AK scheme must be ECDSA-SHA256');
  } else if (p.type === TPM_ALG.RSA) {
    if (p.keyBits < 2048 || pub.unique.length * 8 < 2048)
      throw invalid(`RSA key of ${p.keyBits} bits < 2048`);
    if (
      (p.scheme.scheme !== TPM_ALG.RSASSA && p.scheme.scheme !== TPM_ALG.RSAPSS) ||
      p.scheme.hash !== TPM_ALG.SHA256
    )
      throw invalid('RSA AK scheme must be RSASSA or RSAPSS with SHA-256');
  } else {
    throw invalid('not an asymmetric key');
  }
  let publicKey: KeyObject;
  try {
    publicKey = publicKeyOf(pub);
  } catch (cause) {
    throw invalid('key is not a valid public key', cause);
  }
  return { name: objectName(akPublic), publicKey, public: pub };
}
