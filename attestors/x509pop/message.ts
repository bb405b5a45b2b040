/**
 * The x509pop proof-of-possession (runtime/upstream/protocol.ts): the factory key signs, with
 * SHA-256 as the hash, the message `"edgeward x509pop v1" ‖ nonce ‖ CSR SPKI DER`, i.e. the signed
 * digest is SHA-256 of that concatenation (ECDSA: DER signature; RSA: PKCS#1 v1.5; Ed25519 signs the
 * message itself). `verifyX509pop` is the issuer's check; the chain itself is verified elsewhere.
 *
 * @example
 * ```ts
 * if (!verifyX509pop(chain[0], session.nonce, csrSpki, proof.signature)) refuse();
 * ```
 */
import { type KeyObject, sign, verify, X509Certificate } from 'node:crypto';

export const X509POP_LABEL = 'edgeward x509pop v1';

export function x509popMessage(nonce: Uint8Array, csrSpkiDer: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(X509POP_LABEL, 'ascii'), nonce, csrSpkiDer]);
}

function hashFor(key: KeyObject): string | null {
  return key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448' ? null : 'sha256';
}

export function signX509pop(key: KeyObject, nonce: Uint8Array, csrSpkiDer: Uint8Array): Buffer {
  return sign(hashFor(key), x509popMessage(nonce, csrSpkiDer), key);
}

/** True when `signature` is the leaf key's proof for this nonce and CSR key. */
export function verifyX509pop(
  leafDer: Uint8Array,
  nonce: Uint8Array,
  csrSpkiDer: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    const key = new X509Certificate(Buffer.from(leafDer)).publicKey;
    return verify(hashFor(key), x509popMessage(nonce, csrSpkiDer), key, signature);
  } catch {
    return false;
  }
}
