/**
 * TPMT_PUBLIC (Part 2 §12.2.4): the public area of an object, parsed into a typed value and
 * marshalled back byte-exactly (names are hashes of these bytes, so round trips must be exact).
 * Covers RSA, ECC and KEYEDHASH objects with the parameter forms our templates use.
 */
import { AttestorError } from '../../errors.ts';
import { Reader, Writer } from './buffer.ts';
import { TPM_ALG } from './constants.ts';

/** TPMT_SYM_DEF_OBJECT: `{ alg: NULL }` or AES with key bits and mode. */
export interface SymDef {
  readonly alg: number;
  readonly keyBits?: number;
  readonly mode?: number;
}

/** A signing or encryption scheme: `{ scheme: NULL }` or a scheme with its hash. */
export interface Scheme {
  readonly scheme: number;
  readonly hash?: number;
  /** XOR keyed-hash scheme only. */
  readonly kdf?: number;
}

export type PublicParams =
  | { readonly type: 0x0001; symmetric: SymDef; scheme: Scheme; keyBits: number; exponent: number }
  | { readonly type: 0x0023; symmetric: SymDef; scheme: Scheme; curve: number; kdf: Scheme }
  | { readonly type: 0x0008; scheme: Scheme };

export interface TpmtPublic {
  readonly type: number;
  readonly nameAlg: number;
  readonly attributes: number;
  readonly authPolicy: Uint8Array;
  readonly params: PublicParams;
  /** RSA: modulus; KEYEDHASH: digest; ECC: use `eccX`/`eccY`. */
  readonly unique: Uint8Array;
  readonly eccX?: Uint8Array;
  readonly eccY?: Uint8Array;
}

function readSymDef(r: Reader): SymDef {
  const alg = r.u16('symmetric.algorithm');
  if (alg === TPM_ALG.NULL) return { alg };
  return { alg, keyBits: r.u16('symmetric.keyBits'), mode: r.u16('symmetric.mode') };
}

function writeSymDef(w: Writer, s: SymDef): void {
  w.u16(s.alg);
  if (s.alg !== TPM_ALG.NULL) w.u16(s.keyBits ?? 0).u16(s.mode ?? 0);
}

function readScheme(r: Reader, keyedHash = false): Scheme {
  const scheme = r.u16('scheme');
  if (scheme === TPM_ALG.NULL) return { scheme };
  const hash = r.u16('scheme.hash');
  if (keyedHash && scheme === TPM_ALG.XOR) return { scheme, hash, kdf: r.u16('scheme.kdf') };
  return { scheme, hash };
}

function writeScheme(w: Writer, s: Scheme): void {
  w.u16(s.scheme);
  if (s.scheme === TPM_ALG.NULL) return;
  w.u16(s.hash ?? TPM_ALG.NULL);
  if (s.kdf !== undefined) w.u16(s.kdf);
}

/** Parse TPMT_PUBLIC from a reader (not including any TPM2B size). */
export function readPublic(r: Reader): TpmtPublic {
  const type = r.u16('TPMT_PUBLIC.type');
  const nameAlg = r.u16('TPMT_PUBLIC.nameAlg');
  const attributes = r.u32('TPMT_PUBLIC.objectAttributes');
  const authPolicy = r.tpm2b('authPolicy', 64);
  switch (type) {
    case TPM_ALG.RSA: {
      const symmetric = readSymDef(r);
      const scheme = readScheme(r);
      const keyBits = r.u16('rsa.keyBits');
      const exponent = r.u32('rsa.exponent');
      const unique = r.tpm2b('unique.rsa', 512);
      return {
        type,
        nameAlg,
        attributes,
        authPolicy,
        params: { type, symmetric, scheme, keyBits, exponent },
        unique,
      };
    }
    case TPM_ALG.ECC: {
      const symmetric = readSymDef(r);
      const scheme = readScheme(r);
      const curve = r.u16('ecc.curveID');
      const kdf = readScheme(r);
      const eccX = r.tpm2b('unique.ecc.x', 66);
      const eccY = r.tpm2b('unique.ecc.y', 66);
      return {
        type,
        nameAlg,
        attributes,
        authPolicy,
        params: { type, symmetric, scheme, curve, kdf },
        unique: Buffer.concat([eccX, eccY]),
        eccX,
        eccY,
      };
    }
    case TPM_ALG.KEYEDHASH: {
      const scheme = readScheme(r, true);
      const unique = r.tpm2b('unique.keyedHash', 64);
      return { type, nameAlg, attributes, authPolicy, params: { type, scheme }, unique };
    }
    default:
      throw new AttestorError(
        'ERR_ATTEST_PUBLIC_INVALID',
        `unsupported public area type 0x${type.toString(16)}`,
      );
  }
}

/** Parse a complete TPMT_PUBLIC byte string (no trailing bytes allowed). */
export function parsePublic(bytes: Uint8Array): TpmtPublic {
  const r = new Reader(bytes, 'TPMT_PUBLIC');
  const pub = readPublic(r);
  r.done('TPMT_PUBLIC');
  return pub;
}

export function writePublic(w: Writer, p: TpmtPublic): void {
  w.u16(p.type).u16(p.nameAlg).u32(p.attributes).tpm2b(p.authPolicy);
  const params = p.params;
  switch (params.type) {
    case TPM_ALG.RSA:
      writeSymDef(w, params.symmetric);
      writeScheme(w, params.scheme);
      w.u16(params.keyBits).u32(params.exponent).tpm2b(p.unique);
      return;
    case TPM_ALG.ECC:
      writeSymDef(w, params.symmetric);
      writeScheme(w, params.scheme);
      w.u16(params.curve);
      writeScheme(w, params.kdf);
      w.tpm2b(p.eccX ?? new Uint8Array()).tpm2b(p.eccY ?? new Uint8Array());
      return;
    case TPM_ALG.KEYEDHASH:
      writeScheme(w, params.scheme);
      w.tpm2b(p.unique);
      return;
  }
}

/** The TPMT_PUBLIC bytes of `p`. */
export function marshalPublic(p: TpmtPublic): Buffer {
  const w = new Writer();
  writePublic(w, p);
  return w.finish();
}
