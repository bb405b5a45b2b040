/**
 * Protecting sensitive areas that leave the simulator (Part 1 "Protected Storage"): a child's
 * TPMT_SENSITIVE under its storage parent (TPM2B_PRIVATE from Create, input of Load), and saved
 * contexts under a key that dies with the null seed (ContextSave/ContextLoad), and the credential
 * ActivateCredential recovers under the EK's seed. All are the TPM's outer wrap: AES-CFB under
 * KDFa(…, "STORAGE", name) and an HMAC under KDFa(…, "INTEGRITY") over ciphertext ‖ name, checked
 * before anything is decrypted. A child's private area carries a random IV (a TPM2B_IV between the
 * integrity HMAC and the ciphertext, covered by the HMAC: the reference code's ProduceOuterWrap
 * with useIV, which swtpm's TPM2B_PRIVATE sizes show); contexts and credentials use a zero IV.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import { kdfa } from '../../attestors/tpm/crypto/kdf.ts';
import { Reader, Writer } from '../../attestors/tpm/wire/buffer.ts';
import { HASHES } from '../../attestors/tpm/wire/constants.ts';

export interface Sensitive {
  readonly type: number;
  readonly authValue: Buffer;
  readonly seedValue: Buffer;
  readonly sensitive: Buffer;
}

export interface WrapKey {
  /** Hash for KDFa and the HMAC (the parent's nameAlg). */
  readonly hashAlg: number;
  readonly seed: Buffer;
  /** AES key size in bits (the parent's symmetric.keyBits). */
  readonly keyBits: number;
}

export function marshalSensitive(s: Sensitive): Buffer {
  return new Writer().u16(s.type).tpm2b(s.authValue).tpm2b(s.seedValue).tpm2b(s.sensitive).finish();
}

export function parseSensitive(b: Buffer): Sensitive {
  const r = new Reader(b, 'TPMT_SENSITIVE');
  const s = {
    type: r.u16(),
    authValue: r.tpm2b('authValue', 64),
    seedValue: r.tpm2b('seedValue', 64),
    sensitive: r.tpm2b('sensitive', 512),
  };
  r.done();
  return s;
}

function cipher(key: WrapKey, name: Uint8Array): { aes: Buffer; mac: Buffer; hash: string; size: number } {
  const h = HASHES[key.hashAlg] as { size: number; node: string };
  return {
    aes: kdfa(key.hashAlg, key.seed, 'STORAGE', name, Buffer.alloc(0), key.keyBits),
    mac: kdfa(key.hashAlg, key.seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), h.size * 8),
    hash: h.node,
    size: h.size,
  };
}

/** integrity TPM2B ‖ [TPM2B_IV ‖] AES-CFB(TPM2B(plain)); with `iv` (16 bytes) the IV is stored. */
export function wrap(key: WrapKey, name: Uint8Array, plain: Buffer, iv?: Buffer): Buffer {
  const c = cipher(key, name);
  const ivArea = iv === undefined ? Buffer.alloc(0) : new Writer().tpm2b(iv).finish();
  const e = createCipheriv(`aes-${key.keyBits}-cfb`, c.aes, iv ?? Buffer.alloc(16));
  const enc = Buffer.concat([e.update(new Writer().tpm2b(plain).finish()), e.final()]);
  const integrity = createHmac(c.hash, c.mac).update(ivArea).update(enc).update(name).digest();
  return new Writer().tpm2b(integrity).bytes(ivArea).bytes(enc).finish();
}

/** The largest TPM2B_DIGEST (sizeof(TPMU_HA)): a larger size field is TPM_RC_SIZE. */
const MAX_DIGEST = 64;

/**
 * The plaintext, or why there is none, in libtpms' UnwrapOuter order (checked against swtpm):
 * 'insufficient' when the blob or the decrypted TPM2B is shorter than its size fields say,
 * 'size' when a size field exceeds a digest, 'integrity' when the HMAC (or its size) does not
 * match — checked before anything is decrypted. ActivateCredential answers these as TPM_RC_*.
 */
export function unwrapOuter(
  key: WrapKey,
  name: Uint8Array,
  blob: Buffer,
  withIv = false,
): Buffer | 'insufficient' | 'size' | 'integrity' {
  const c = cipher(key, name);
  if (blob.length < 2) return 'insufficient';
  const n = blob.readUInt16BE(0);
  if (n > MAX_DIGEST) return 'size';
  if (blob.length < 2 + n) return 'insufficient';
  const integrity = blob.subarray(2, 2 + n);
  let at = 2 + n;
  let iv: Buffer = Buffer.alloc(16);
  if (withIv) {
    if (blob.length < at + 2) return 'insufficient';
    const ivSize = blob.readUInt16BE(at);
    if (ivSize !== 16) return 'size';
    if (blob.length < at + 2 + ivSize) return 'insufficient';
    iv = blob.subarray(at + 2, at + 2 + ivSize);
    at += 2 + ivSize;
  }
  const covered = blob.subarray(2 + n);
  const enc = blob.subarray(at);
  const expect = createHmac(c.hash, c.mac).update(covered).update(name).digest();
  if (n !== c.size || !timingSafeEqual(integrity, expect)) return 'integrity';
  const d = createDecipheriv(`aes-${key.keyBits}-cfb`, c.aes, iv);
  const dec = Buffer.concat([d.update(enc), d.final()]);
  if (dec.length < 2) return 'insufficient';
  const len = dec.readUInt16BE(0);
  if (len !== dec.length - 2) return len > dec.length - 2 ? 'insufficient' : 'size';
  return dec.subarray(2);
}

/** The plaintext, or undefined when the structure or the integrity check fails. */
export function unwrap(key: WrapKey, name: Uint8Array, blob: Buffer, withIv = false): Buffer | undefined {
  const plain = unwrapOuter(key, name, blob, withIv);
  return typeof plain === 'string' ? undefined : plain;
}
