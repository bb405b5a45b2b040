/**
 * KDFa (SP 800-108 counter mode with HMAC) and KDFe (SP 800-56A concatenation KDF), as TPM 2.0
 * Part 1 "Key Derivation Functions" defines them (brief §4.2). Labels are ASCII and get one
 * terminating NUL here; size prefixes of the inputs are never hashed.
 */
import { createHash, createHmac } from 'node:crypto';
import { HASHES } from '../wire/constants.ts';

function hashName(alg: number): string {
  const h = HASHES[alg];
  if (h === undefined) throw new TypeError(`unsupported hash algorithm 0x${alg.toString(16)}`);
  return h.node;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function label0(label: string): Buffer {
  return Buffer.concat([Buffer.from(label, 'ascii'), Buffer.from([0])]);
}

function truncate(out: Buffer, bits: number): Buffer {
  const bytes = Math.ceil(bits / 8);
  const r = Buffer.from(out.subarray(0, bytes));
  if (bits % 8 !== 0) r[0] = (r[0] as number) & ((1 << (bits % 8)) - 1);
  return r;
}

/** Counter mode: block(1) ‖ block(2) ‖ … until `bits`, truncated as the TPM truncates. */
function counterMode(bits: number, block: (counter: Buffer) => Buffer): Buffer {
  const parts: Buffer[] = [];
  let have = 0;
  for (let i = 1; have * 8 < bits; i++) {
    const d = block(u32(i));
    parts.push(d);
    have += d.length;
  }
  return truncate(Buffer.concat(parts), bits);
}

/** KDFa: HMAC_hash(key, i ‖ label\0 ‖ contextU ‖ contextV ‖ bits) per block. */
export function kdfa(
  hashAlg: number,
  key: Uint8Array,
  label: string,
  contextU: Uint8Array,
  contextV: Uint8Array,
  bits: number,
): Buffer {
  const name = hashName(hashAlg);
  const tail = Buffer.concat([label0(label), contextU, contextV, u32(bits)]);
  return counterMode(bits, (i) => createHmac(name, key).update(i).update(tail).digest());
}

/** KDFe: H(i ‖ Z ‖ label\0 ‖ partyU ‖ partyV) per block. */
export function kdfe(
  hashAlg: number,
  z: Uint8Array,
  label: string,
  partyU: Uint8Array,
  partyV: Uint8Array,
  bits: number,
): Buffer {
  const name = hashName(hashAlg);
  const tail = Buffer.concat([z, label0(label), partyU, partyV]);
  return counterMode(bits, (i) => createHash(name).update(i).update(tail).digest());
}

/** H_alg(data…) */
export function digest(hashAlg: number, ...data: Uint8Array[]): Buffer {
  const h = createHash(hashName(hashAlg));
  for (const d of data) h.update(d);
  return h.digest();
}
