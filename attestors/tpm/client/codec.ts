/**
 * Field codecs: the data that describes TPM commands (STYLE.md rule 3). TypeScript has no struct
 * tags, so each parameter of a command is a `Codec` — how one TPM type (Part 2) is written and
 * read — and a command is an ordered record of them. Composite types are built from `struct` and
 * `sized` (a TPM2B around a structure).
 */
import { AttestorError } from '../../errors.ts';
import { marshalSignature, readSignature } from '../wire/attest.ts';
import { Reader, Writer } from '../wire/buffer.ts';
import { HASHES, TPM_ALG, TPM_CAP } from '../wire/constants.ts';
import { type PcrSelection, readPcrSelection, writePcrSelection } from '../wire/pcr-selection.ts';
import { readPublic } from '../wire/public.ts';

export interface Codec<T> {
  write(w: Writer, v: T): void;
  read(r: Reader, field: string): T;
}

// biome-ignore lint/suspicious/noExplicitAny: a record of codecs of any value types
export type Fields = Readonly<Record<string, Codec<any>>>;
// biome-ignore lint/suspicious/noExplicitAny: inference over codec records
export type Infer<F> = { -readonly [K in keyof F]: F[K] extends Codec<infer T> ? T : any };

export const u8: Codec<number> = { write: (w, v) => w.u8(v), read: (r, f) => r.u8(f) };
export const u16: Codec<number> = { write: (w, v) => w.u16(v), read: (r, f) => r.u16(f) };
export const u32: Codec<number> = { write: (w, v) => w.u32(v), read: (r, f) => r.u32(f) };
export const i32: Codec<number> = { write: (w, v) => w.i32(v), read: (r, f) => r.i32(f) };
export const u64: Codec<bigint> = { write: (w, v) => w.u64(v), read: (r, f) => r.u64(f) };

/** A TPM2B of bytes whose size may not exceed `max` (the Part 2 bound of that type). */
export function b2(max = 0xffff): Codec<Uint8Array> {
  return { write: (w, v) => w.tpm2b(v), read: (r, f) => r.tpm2b(f, max) };
}

/** TPMI_YES_NO */
export const yesNo: Codec<boolean> = { write: (w, v) => w.u8(v ? 1 : 0), read: (r, f) => r.u8(f) === 1 };

/** A structure: fields in order. */
export function struct<F extends Fields>(fields: F): Codec<Infer<F>> {
  return {
    write(w, v) {
      for (const [k, c] of Object.entries(fields))
        (c as Codec<unknown>).write(w, (v as Record<string, unknown>)[k]);
    },
    read(r, field) {
      const out: Record<string, unknown> = {};
      for (const [k, c] of Object.entries(fields)) out[k] = (c as Codec<unknown>).read(r, `${field}.${k}`);
      return out as Infer<F>;
    },
  };
}

/** A TPM2B wrapping a structure (TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TPM2B_NV_PUBLIC). */
export function sized<T>(inner: Codec<T>): Codec<T> {
  return {
    write: (w, v) => w.sized((iw) => inner.write(iw, v)),
    read(r, field) {
      const sub = r.sized(field);
      const v = inner.read(sub, field);
      sub.done(field);
      return v;
    },
  };
}

/** A TPML: u32 count + elements, with a bound on the count. */
export function list<T>(item: Codec<T>, max: number): Codec<T[]> {
  return {
    write(w, v) {
      w.u32(v.length);
      for (const x of v) item.write(w, x);
    },
    read(r, field) {
      const n = r.u32(`${field}.count`);
      if (n > max) throw new AttestorError('ERR_TPM_MALFORMED', `${field}: count ${n} exceeds ${max}`);
      return Array.from({ length: n }, (_, i) => item.read(r, `${field}[${i}]`));
    },
  };
}

/** TPM2B_PUBLIC as the TPMT_PUBLIC bytes inside it (names hash exactly these bytes). */
export const publicArea: Codec<Uint8Array> = {
  write: (w, v) => w.tpm2b(v),
  read(r, field) {
    const bytes = r.tpm2b(field, 1024);
    if (bytes.length > 0) {
      const sub = new Reader(bytes, field);
      readPublic(sub); // the structure must parse exactly
      sub.done(field);
    }
    return bytes;
  },
};

export const pcrSelection: Codec<PcrSelection> = {
  write: writePcrSelection,
  read: (r) => readPcrSelection(r),
};

/** TPML_DIGEST */
export const digestList = list(b2(64), 8);

/** TPML_DIGEST_VALUES: digests without size prefixes, length fixed by the algorithm. */
export const digestValues: Codec<{ hash: number; digest: Uint8Array }[]> = list(
  {
    write(w, v) {
      const size = HASHES[v.hash]?.size;
      if (size === undefined || v.digest.length !== size)
        throw new TypeError('digest size does not match its hash');
      w.u16(v.hash).bytes(v.digest);
    },
    read(r, field) {
      const hash = r.u16(`${field}.hashAlg`);
      const size = HASHES[hash]?.size;
      if (size === undefined)
        throw new AttestorError('ERR_TPM_MALFORMED', `${field}: unknown hash 0x${hash.toString(16)}`);
      return { hash, digest: r.bytes(size, field) };
    },
  },
  16,
);

/** TPMT_SIG_SCHEME / TPMT_RSA_DECRYPT: `{scheme: NULL}` or scheme + hash. */
export const sigScheme: Codec<{ scheme: number; hash?: number }> = {
  write(w, v) {
    w.u16(v.scheme);
    if (v.scheme !== TPM_ALG.NULL) w.u16(v.hash ?? TPM_ALG.SHA256);
  },
  read(r, field) {
    const scheme = r.u16(field);
    return scheme === TPM_ALG.NULL ? { scheme } : { scheme, hash: r.u16(`${field}.hash`) };
  },
};
export const NULL_SCHEME = { scheme: TPM_ALG.NULL } as const;

/** TPMT_SYM_DEF (sessions): NULL or alg + keyBits + mode. */
export const symDef: Codec<{ alg: number; keyBits?: number; mode?: number }> = {
  write(w, v) {
    w.u16(v.alg);
    if (v.alg !== TPM_ALG.NULL) w.u16(v.keyBits ?? 128).u16(v.mode ?? TPM_ALG.CFB);
  },
  read(r, field) {
    const alg = r.u16(field);
    return alg === TPM_ALG.NULL ? { alg } : { alg, keyBits: r.u16(field), mode: r.u16(field) };
  },
};

/** TPMT_TK_CREATION / TPMT_TK_AUTH / TPMT_TK_HASHCHECK / TPMT_TK_VERIFIED. */
export const ticket = struct({ tag: u16, hierarchy: u32, digest: b2(64) });

/** TPMT_SIGNATURE, kept as its bytes (what the upstream protocol carries). */
export const signatureBytes: Codec<Uint8Array> = {
  write: (w, v) => w.bytes(v),
  read: (r) => marshalSignature(readSignature(r)),
};

/** TPMS_SENSITIVE_CREATE inside its TPM2B. */
export const sensitiveCreate = sized(struct({ userAuth: b2(64), data: b2(256) }));

/** TPMS_NV_PUBLIC inside TPM2B_NV_PUBLIC. */
export const nvPublic = sized(
  struct({ nvIndex: u32, nameAlg: u16, attributes: u32, authPolicy: b2(64), dataSize: u16 }),
);

/** TPMS_CONTEXT */
export const context = struct({ sequence: u64, savedHandle: u32, hierarchy: u32, blob: b2(8192) });

/** TPMS_CAPABILITY_DATA: the capability and its list, decoded per capability. */
export type CapabilityData =
  | { capability: 0; algs: { alg: number; attributes: number }[] }
  | { capability: 1; handles: number[] }
  | { capability: 2; commands: number[] }
  | { capability: 5; pcrs: PcrSelection }
  | { capability: 6; properties: { property: number; value: number }[] }
  | { capability: 8; curves: number[] };

const algProps = list(struct({ alg: u16, attributes: u32 }), 256);
const u32s = list(u32, 1024);
const props = list(struct({ property: u32, value: u32 }), 256);
const curves = list(u16, 64);

export const capabilityData: Codec<CapabilityData> = {
  write(w, v) {
    w.u32(v.capability);
    switch (v.capability) {
      case 0:
        return algProps.write(w, v.algs);
      case 1:
        return u32s.write(w, v.handles);
      case 2:
        return u32s.write(w, v.commands);
      case 5:
        return writePcrSelection(w, v.pcrs);
      case 6:
        return props.write(w, v.properties);
      case 8:
        return curves.write(w, v.curves);
    }
  },
  read(r, field) {
    const capability = r.u32(`${field}.capability`);
    switch (capability) {
      case TPM_CAP.ALGS:
        return { capability, algs: algProps.read(r, field) };
      case TPM_CAP.HANDLES:
        return { capability, handles: u32s.read(r, field) };
      case TPM_CAP.COMMANDS:
        return { capability, commands: u32s.read(r, field) };
      case TPM_CAP.PCRS:
        return { capability, pcrs: readPcrSelection(r) };
      case TPM_CAP.TPM_PROPERTIES:
        return { capability, properties: props.read(r, field) };
      case TPM_CAP.ECC_CURVES:
        return { capability, curves: curves.read(r, field) };
      default:
        throw new AttestorError('ERR_TPM_MALFORMED', `${field}: unsupported capability ${capability}`);
    }
  },
};

/** Marshal one value with a codec (tests, and the simulator's responses). */
export function encode<T>(codec: Codec<T>, v: T): Buffer {
  const w = new Writer();
  codec.write(w, v);
  return w.finish();
}
