/**
 * AES-256-GCM for one stored value. The value's key name is the additional authenticated data,
 * so a value copied under another key fails authentication just like a flipped bit does.
 *
 * Layout: `0x01 ‖ iv (12) ‖ ciphertext ‖ tag (16)`. The IV comes from the injected `Random`;
 * with 96-bit random IVs one data key stays far below the 2^32-messages bound of NIST SP 800-38D
 * for the lifetime of a gateway store. `gcmSeal`/`gcmOpen` are the AES-GCM framing itself
 * (`iv ‖ ciphertext ‖ tag`), which the key-file protector uses for the data key too.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { Random } from '../core/random.ts';

const FORMAT = Buffer.of(0x01);
const IV_BYTES = 12;
const TAG_BYTES = 16;
const AAD_PREFIX = 'edgeward-store v1\u0000';
const NO_HEADER = Buffer.alloc(0);

/** `header ‖ iv ‖ ciphertext ‖ tag` of `plaintext` under the 32-byte `key`, `aad` authenticated. */
export function gcmSeal(
  key: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  random: Random,
  header: Uint8Array = NO_HEADER,
): Buffer {
  const iv = random.bytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([header, iv, body, cipher.getAuthTag()]);
}

/** The plaintext of `iv ‖ ciphertext ‖ tag`; `undefined` when it fails authentication or is malformed. */
export function gcmOpen(key: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Buffer | undefined {
  if (sealed.length < IV_BYTES + TAG_BYTES) return undefined;
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const iv = buf.subarray(0, IV_BYTES);
  const tag = buf.subarray(buf.length - TAG_BYTES);
  const body = buf.subarray(IV_BYTES, buf.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    return undefined;
  }
}

/** Encrypt `plaintext` stored under `name` with the 32-byte `dataKey`. */
export function sealValue(dataKey: Uint8Array, name: string, plaintext: Uint8Array, random: Random): Buffer {
  return gcmSeal(dataKey, Buffer.from(AAD_PREFIX + name, 'utf8'), plaintext, random, FORMAT);
}

/** Decrypt a sealed value; `undefined` when it fails authentication or is malformed. */
export function openValue(dataKey: Uint8Array, name: string, sealed: Uint8Array): Buffer | undefined {
  if (sealed[0] !== FORMAT[0]) return undefined;
  return gcmOpen(dataKey, Buffer.from(AAD_PREFIX + name, 'utf8'), sealed.subarray(1));
}
