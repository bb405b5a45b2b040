/**
 * AES-256-GCM for one stored value. The value's key name is the additional authenticated data,
 * so a value copied under another key fails authentication just like a flipped bit does.
 *
 * Layout: `0x01 ‖ iv (12) ‖ ciphertext ‖ tag (16)`. The IV comes from the injected `Random`;
 * with 96-bit random IVs one data key stays far below the 2^32-messages bound of NIST SP 800-38D
 * for the lifetime of a gateway store.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { Random } from '../core/random.ts';

const FORMAT = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const AAD_PREFIX = 'edgeward-store v1\u0000';

/** Encrypt `plaintext` stored under `name` with the 32-byte `dataKey`. */
export function sealValue(dataKey: Uint8Array, name: string, plaintext: Uint8Array, random: Random): Buffer {
  const iv = random.bytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', dataKey, iv);
  cipher.setAAD(Buffer.from(AAD_PREFIX + name, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.of(FORMAT), iv, body, cipher.getAuthTag()]);
}

/** Decrypt a sealed value; `undefined` when it fails authentication or is malformed. */
export function openValue(dataKey: Uint8Array, name: string, sealed: Uint8Array): Buffer | undefined {
  if (sealed.length < 1 + IV_BYTES + TAG_BYTES || sealed[0] !== FORMAT) return undefined;
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const iv = buf.subarray(1, 1 + IV_BYTES);
  const tag = buf.subarray(buf.length - TAG_BYTES);
  const body = buf.subarray(1 + IV_BYTES, buf.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', dataKey, iv);
    decipher.setAAD(Buffer.from(AAD_PREFIX + name, 'utf8'));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    return undefined;
  }
}
