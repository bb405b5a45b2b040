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
