/**
 * Asymmetric key material for the simulator, built from bytes the caller supplies (a seeded
 * KDF stream for primary keys, the injected Random for ordinary keys), so that the same seed
 * and template always give the same key, as on a real TPM (Part 1 "Primary Keys").
 *
 * - ECC: the private scalar is the first stream block that falls in [1, n-1]; public point and
 *   ECDH come from node:crypto. Signing a caller-supplied digest (TPM2_Sign) is raw ECDSA done
 *   here with bigint arithmetic, because node:crypto only signs messages it hashes itself.
 * - RSA: primes are found by a seeded search (stream blocks with the top two bits and the low bit
 *   set, tested with OpenSSL's `checkPrime`), then the key is assembled as a JWK.
 */
import { checkPrimeSync, createECDH, createPrivateKey, type KeyObject } from 'node:crypto';
import { CURVES, TPM_ECC } from '../../attestors/tpm/wire/constants.ts';

const ORDERS: Readonly<Record<number, bigint>> = {
  [TPM_ECC.NIST_P256]: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  [TPM_ECC.NIST_P384]:
    0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
  [TPM_ECC.NIST_P521]:
    0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n,
};

export function curveInfo(curve: number): { size: number; node: string; jwk: string; order: bigint } {
  const c = CURVES[curve];
  const order = ORDERS[curve];
  if (c === undefined || order === undefined) throw new RangeError(`curve 0x${curve.toString(16)}`);
  return { ...c, order };
}

export const toBig = (b: Uint8Array): bigint =>
  b.length === 0 ? 0n : BigInt(`0x${Buffer.from(b).toString('hex')}`);

export function fromBig(v: bigint, size: number): Buffer {
  const hex = v.toString(16).padStart(size * 2, '0');
  if (hex.length > size * 2) throw new RangeError('integer larger than its field');
  return Buffer.from(hex, 'hex');
}

function bitLength(v: bigint): number {
  return v === 0n ? 0 : v.toString(2).length;
}

function modInverse(a: bigint, m: bigint): bigint {
  let [r0, r1] = [((a % m) + m) % m, m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new RangeError('not invertible');
  return ((s0 % m) + m) % m;
}

/** A private scalar in [1, n-1] from the stream (`next(i)` yields candidate i). */
export function eccScalar(curve: number, next: (i: number) => Uint8Array): Buffer {
  const { size, order } = curveInfo(curve);
  const bits = bitLength(order);
  for (let i = 1; i < 1000; i++) {
    const raw = Buffer.from(next(i).subarray(0, size));
    const excess = size * 8 - bits;
    if (excess > 0) raw[0] = (raw[0] as number) & (0xff >> excess);
    const d = toBig(raw);
    if (d > 0n && d < order) return fromBig(d, size);
  }
  throw new Error('no ECC scalar found');
}

/** The public point of scalar `d`. */
export function eccPoint(curve: number, d: Uint8Array): { x: Buffer; y: Buffer } {
  const { size, node } = curveInfo(curve);
  const ecdh = createECDH(node);
  ecdh.setPrivateKey(Buffer.from(d));
  const pub = ecdh.getPublicKey();
  return { x: pub.subarray(1, 1 + size), y: pub.subarray(1 + size) };
}

export function eccPrivateKey(curve: number, d: Uint8Array): KeyObject {
  const { jwk } = curveInfo(curve);
  const { x, y } = eccPoint(curve, d);
  return createPrivateKey({
    key: {
      kty: 'EC',
      crv: jwk,
      d: Buffer.from(d).toString('base64url'),
      x: x.toString('base64url'),
      y: y.toString('base64url'),
    },
    format: 'jwk',
  });
}

/** ECDH x-coordinate of `d` × (x, y); throws when the point is not on the curve. */
export function eccSharedX(curve: number, d: Uint8Array, x: Uint8Array, y: Uint8Array): Buffer {
  const { size, node } = curveInfo(curve);
  if (x.length > size || y.length > size) throw new RangeError('coordinate too long');
  const ecdh = createECDH(node);
  ecdh.setPrivateKey(Buffer.from(d));
  const pad = (v: Uint8Array): Buffer => Buffer.concat([Buffer.alloc(size - v.length), v]);
  return ecdh.computeSecret(Buffer.concat([Buffer.from([4]), pad(x), pad(y)]));
}

/** Raw ECDSA over a digest the caller computed (TPM2_Sign); `k` comes from `nonce(i)`. */
export function ecdsaSignDigest(
  curve: number,
  d: Uint8Array,
  digest: Uint8Array,
  nonce: (i: number) => Uint8Array,
): { r: Buffer; s: Buffer } {
  const { size, order } = curveInfo(curve);
  const nBits = bitLength(order);
  let e = toBig(digest);
  const dBits = digest.length * 8;
  if (dBits > nBits) e >>= BigInt(dBits - nBits);
  const priv = toBig(d);
  for (let i = 1; i < 100; i++) {
    const k = toBig(eccScalar(curve, (j) => nonce(i * 1000 + j)));
    const r = toBig(eccPoint(curve, fromBig(k, size)).x) % order;
    if (r === 0n) continue;
    const s = (modInverse(k, order) * (e + r * priv)) % order;
    if (s === 0n) continue;
    return { r: fromBig(r, size), s: fromBig(s, size) };
  }
  throw new Error('ECDSA nonce search failed');
}

const SMALL_PRIMES: readonly number[] = (() => {
  const out: number[] = [];
  for (let n = 3; n < 4000; n += 2) if (out.every((p) => p * p > n || n % p !== 0)) out.push(n);
  return out;
})();

/**
 * One RSA prime of `bits` bits with gcd(p - 1, e) = 1: start from a stream block (top two bits and
 * the low bit set) and step by 2, skipping candidates a small prime divides before asking OpenSSL.
 */
function rsaPrime(bits: number, e: bigint, next: () => Uint8Array, avoid: bigint): bigint {
  const bytes = bits / 8;
  for (let draw = 0; draw < 1000; draw++) {
    const raw = Buffer.from(next().subarray(0, bytes));
    raw[0] = (raw[0] as number) | 0xc0;
    raw[bytes - 1] = (raw[bytes - 1] as number) | 1;
    const start = toBig(raw);
    const residues = SMALL_PRIMES.map((q) => Number(start % BigInt(q)));
    for (let k = 0; k < 1 << 14; k += 2) {
      if (SMALL_PRIMES.some((q, i) => ((residues[i] as number) + k) % q === 0)) continue;
      const p = start + BigInt(k);
      if (bitLength(p) !== bits) break;
      if (p === avoid || (p - 1n) % e === 0n) continue;
      if (checkPrimeSync(p, { checks: 0 })) return p;
    }
  }
  throw new Error('RSA prime search failed');
}

export interface RsaPrimes {
  readonly p: bigint;
  readonly q: bigint;
}

/** Two primes whose product has exactly `keyBits` bits. */
export function rsaPrimes(keyBits: number, exponent: number, next: () => Uint8Array): RsaPrimes {
  const e = BigInt(exponent === 0 ? 65537 : exponent);
  const p = rsaPrime(keyBits / 2, e, next, 0n);
  const q = rsaPrime(keyBits / 2, e, next, p);
  return p > q ? { p, q } : { p: q, q: p };
}

/** An RSA private key from one prime and the modulus (how a TPM stores RSA keys: prime p only). */
export function rsaPrivateKey(n: bigint, p: bigint, exponent: number): KeyObject {
  const e = BigInt(exponent === 0 ? 65537 : exponent);
  const q = n / p;
  if (p * q !== n) throw new RangeError('p does not divide n');
  const d = modInverse(e, (p - 1n) * (q - 1n));
  const size = Math.ceil(bitLength(n) / 8);
  const half = Math.ceil(bitLength(p) / 8);
  const b = (v: bigint, len: number): string => fromBig(v, len).toString('base64url');
  return createPrivateKey({
    key: {
      kty: 'RSA',
      n: b(n, size),
      e: b(e, 3),
      d: b(d, size),
      p: b(p, half),
      q: b(q, half),
      dp: b(d % (p - 1n), half),
      dq: b(d % (q - 1n), half),
      qi: b(modInverse(q, p), half),
    },
    format: 'jwk',
  });
}
