/**
 * The quote's qualifying data: SHA-256(nonce ‖ CSR SubjectPublicKeyInfo DER). Binding the key of
 * the requested SVID into the quote proves that the same device that holds the AK asked for that
 * key to be certified (ARCHITECTURE.md §3 step 3). Both the attestor and the issuer call this.
 *
 * @example
 * ```ts
 * verifyQuote({ ..., nonce: qualifyingData(session.nonce, csrSpkiDer) });
 * ```
 */
import { createHash } from 'node:crypto';

export function qualifyingData(nonce: Uint8Array, csrSpkiDer: Uint8Array): Buffer {
  return createHash('sha256').update(nonce).update(csrSpkiDer).digest();
}
