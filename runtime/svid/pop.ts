import { createHash } from 'node:crypto';

/**
 * What an x509pop (proof of possession) signature covers, shared by the gateway's attestor
 * and the issuer so both sides build the same bytes: the ASCII label
 * `edgeward x509pop v1` ‖ nonce ‖ the CSR's SubjectPublicKeyInfo DER, signed with SHA-256
 * (ECDSA with a DER signature, or RSA PKCS#1 v1.5) by the factory certificate's key.
 *
 * @example
 * ```ts
 * const sig = sign('sha256', x509popSignedData(nonce, spki), { key: factoryKey, dsaEncoding: 'der' });
 * ```
 */
export const X509POP_LABEL = 'edgeward x509pop v1';

export function x509popSignedData(nonce: Uint8Array, csrSpki: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(X509POP_LABEL, 'ascii'), nonce, csrSpki]);
}

/**
 * What a recovery's proof of possession of the delegated CA key covers (`/v1/recover/finish`,
 * shared by the agent and the issuer): the ASCII label `edgeward ca-pop v1` ‖ nonce ‖ the CSR's
 * SubjectPublicKeyInfo DER. The signature is ECDSA (DER) with SHA-256 over these bytes, i.e. over
 * the digest `caPopDigest` gives (what a TPM2_Sign of the digest produces).
 *
 * @example
 * ```ts
 * const sig = sign('sha256', caPopSignedData(nonce, spki), { key: caKey, dsaEncoding: 'der' });
 * verify('sha256', caPopSignedData(nonce, spki), { key: caCert.publicKey, dsaEncoding: 'der' }, sig);
 * ```
 */
export const CA_POP_LABEL = 'edgeward ca-pop v1';

export function caPopSignedData(nonce: Uint8Array, csrSpki: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(CA_POP_LABEL, 'ascii'), nonce, csrSpki]);
}

/** SHA-256 of `caPopSignedData`: the digest a TPM (or any raw ECDSA signer) signs. */
export function caPopDigest(nonce: Uint8Array, csrSpki: Uint8Array): Buffer {
  return createHash('sha256').update(caPopSignedData(nonce, csrSpki)).digest();
}
