/**
 * The one signing seam for the gateway's delegated CA key (issue 14 item 5): a public key and an
 * asynchronous "sign these bytes". Backends: a software key (the agent's PKCS#8 kept only in the
 * sealed store, the issuer's PEM file; `softwareCaKey`), a TPM-resident key whose private part
 * never leaves the TPM (`attestors/tpm/signing-key.ts`, adapted by the agent) and the issuer's
 * PKCS#11 token key (`runtime/issuer/pkcs11/`). Everything a CA signs goes through it: device
 * SVIDs and the gateway's local server certificate (`createCaSigner`), the CA's own CSR to the
 * issuer (`createCaCsr`), the recovery proof of possession, and the issuer's SVIDs and
 * delegated CAs (`runtime/issuer/ca.ts`).
 *
 * @example
 * ```ts
 * const key = softwareCaKey(newP256Key());
 * const csr = await createCaCsr(key);
 * const der = await key.sign(tbs); // DER ECDSA-SHA256 over tbs
 * ```
 */
import { createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { bitString, explicit, seq, TAG } from '../spiffe/der.ts';
import { name } from './extensions.ts';
import { signatureAlgorithm, spkiOf } from './signer.ts';

export interface CaKey {
  /** Where the private key lives. */
  readonly backend: 'software' | 'tpm' | 'pkcs11';
  /** SubjectPublicKeyInfo DER of the key. */
  readonly spki: Buffer;
  /** The public key (for checks against certificates). */
  readonly publicKey: KeyObject;
  /** Signature over `data` (hashed by the key's hash: SHA-256 for P-256): DER ECDSA (or PKCS#1 for RSA). */
  sign(data: Uint8Array): Promise<Buffer>;
  /** Release what the backend holds (the TPM's loaded handle, the PKCS#11 session). Idempotent. */
  close(): Promise<void>;
}

/** A software CA key: signs with node:crypto (the agent stores it only sealed; the issuer's is a 0600 PEM file). */
export function softwareCaKey(privateKey: KeyObject): CaKey {
  const alg = signatureAlgorithm(privateKey);
  const opts =
    privateKey.asymmetricKeyType === 'ec' ? { key: privateKey, dsaEncoding: 'der' as const } : privateKey;
  return {
    backend: 'software',
    spki: spkiOf(privateKey),
    publicKey: createPublicKey(privateKey),
    sign: async (data) => cryptoSign(alg.hash, data, opts),
    close: async () => {},
  };
}

/** A CSR (PKCS#10) for a CA key, signed through the seam; SPIFFE IDs come from the issuer. */
export async function createCaCsr(key: CaKey, commonName = 'edgeward'): Promise<Buffer> {
  const alg = signatureAlgorithm(key.publicKey);
  const info = seq(Buffer.from([TAG.INTEGER, 1, 0]), name(commonName), key.spki, explicit(0));
  return seq(info, alg.algId, bitString(await key.sign(info)));
}
