/**
 * The project's one DER (ITU-T X.690) module: a writer for certificates, CSRs and the fast SVID
 * template, and a reader for untrusted bytes. There is one header decoder (`readSpan`): definite
 * lengths only, minimal length encoding, single-byte tags, every length checked against its
 * container. It throws `ERR_DER_MALFORMED` (never a RangeError) on anything truncated,
 * indefinite, non-minimal or oversized. Two ways to walk with it:
 *
 * - `Span`s (`readSpan`, `children`, `spanOid`): offsets into the caller's bytes, no copies. The
 *   broker's handshake path (`cert-extensions.ts`, `cert-facts.ts`) reads peer certificates this
 *   way, without a general ASN.1 library.
 * - `DerReader`: a sequential reader yielding `Tlv`s (content and whole encoding as Buffers),
 *   which the SVID signer, the issuer and the CSR parser use to take structures apart exactly.
 *
 * It lives in `runtime/spiffe/` because everything that reads certificates (the verifier here,
 * `runtime/svid/`, the transport) already depends on this folder, and this folder on none of them.
 *
 * @example
 * ```ts
 * const spki = seq(seq(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7')), bitString(point));
 * const r = new DerReader(spki); const inner = r.read(TAG.SEQUENCE);
 * const top = readSpan(der, 0, der.length, 'certificate', 'Certificate');
 * for (const c of children(der, top)) c.tag;
 * ```
 */
import { SvidError } from '../errors.ts';

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

// ---- writer ------------------------------------------------------------------------------------

/** The header (tag + definite length) of a TLV whose content is `length` bytes. */
export function header(tag: number, length: number): Buffer {
  if (length < 0x80) return Buffer.from([tag, length]);
  if (length < 0x100) return Buffer.from([tag, 0x81, length]);
  if (length < 0x10000) return Buffer.from([tag, 0x82, length >> 8, length & 0xff]);
  if (length < 0x1000000) return Buffer.from([tag, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff]);
  throw new TypeError('DER value too long');
}

export function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  const body = content.length === 1 ? (content[0] as Uint8Array) : Buffer.concat(content);
  return Buffer.concat([header(tag, body.length), body]);
}

export const seq = (...items: Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...items);
export const set = (...items: Uint8Array[]): Buffer => tlv(TAG.SET, ...items);
/** Context-specific constructed `[n]`. */
export const explicit = (n: number, ...items: Uint8Array[]): Buffer => tlv(0xa0 | n, ...items);
/** Context-specific primitive `[n]` (IMPLICIT over a primitive type). */
export const implicit = (n: number, content: Uint8Array): Buffer => tlv(0x80 | n, content);
export const octetString = (b: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, b);
export const bitString = (b: Uint8Array, unused = 0): Buffer => tlv(TAG.BIT_STRING, Buffer.from([unused]), b);
export const bool = (v: boolean): Buffer => Buffer.from([TAG.BOOLEAN, 1, v ? 0xff : 0]);

/** A non-negative INTEGER from big-endian magnitude bytes (minimal encoding). */
export function uint(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = Buffer.from(magnitude.subarray(i));
  if (m.length === 0) return Buffer.from([TAG.INTEGER, 1, 0]);
  return (m[0] as number) & 0x80 ? tlv(TAG.INTEGER, Buffer.from([0]), m) : tlv(TAG.INTEGER, m);
}

export const smallInt = (n: number): Buffer => {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new TypeError('smallInt out of range');
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return uint(b);
};

const oidCache = new Map<string, Buffer>();
/** An OBJECT IDENTIFIER from dotted text. */
export function oid(dotted: string): Buffer {
  const hit = oidCache.get(dotted);
  if (hit !== undefined) return hit;
  const arcs = dotted.split('.').map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isInteger(a) || a < 0))
    throw new TypeError(`bad OID ${dotted}`);
  const out: number[] = [];
  const push = (v: number): void => {
    const bytes = [v & 0x7f];
    for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) bytes.unshift((x & 0x7f) | 0x80);
    out.push(...bytes);
  };
  push((arcs[0] as number) * 40 + (arcs[1] as number));
  for (const a of arcs.slice(2)) push(a);
  const enc = tlv(TAG.OID, Buffer.from(out));
  oidCache.set(dotted, enc);
  return enc;
}

const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, Zulu. */
export function time(ms: number): Buffer {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const y = d.getUTCFullYear();
  const rest = `${pad2(d.getUTCMonth() + 1)}${pad2(d.getUTCDate())}${pad2(d.getUTCHours())}${pad2(d.getUTCMinutes())}${pad2(d.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(TAG.UTC_TIME, Buffer.from(`${pad2(y % 100)}${rest}`, 'ascii'));
  if (y < 0 || y > 9999) throw new TypeError('time outside the X.509 range');
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(`${String(y).padStart(4, '0')}${rest}`, 'ascii'));
}

// ---- reader: spans ------------------------------------------------------------------------------

/** `ERR_DER_MALFORMED`, naming what was being read and why it is not DER. */
export const derMalformed = (what: string, why: string): SvidError =>
  new SvidError('ERR_DER_MALFORMED', `${what}: ${why}`);

/** One element read in place: its tag and where its value lies in the caller's bytes. */
export interface Span {
  readonly tag: number;
  /** First byte of the value. */
  readonly start: number;
  /** One past the last byte of the value. */
  readonly end: number;
}

/**
 * Decode the TLV header at `off` (X.690 §8.1, §10.1): the value must end by `limit`. Errors
 * name `what` (the structure) and `field` (the element) being read. (Every argument is
 * required: default parameters measurably slowed this, the handshake path's innermost call.)
 */
export function readSpan(buf: Uint8Array, off: number, limit: number, what: string, field: string): Span {
  if (off + 2 > limit) throw derMalformed(what, `truncated ${field}`);
  const tag = buf[off] as number;
  if ((tag & 0x1f) === 0x1f) throw derMalformed(what, `multi-byte tag in ${field}`);
  let len = buf[off + 1] as number;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3) throw derMalformed(what, `unsupported length form in ${field}`);
    if (start + n > limit) throw derMalformed(what, `truncated length of ${field}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] as number);
    if (len < 0x80 || (n > 1 && buf[start] === 0)) throw derMalformed(what, `non-minimal length in ${field}`);
    start += n;
  }
  if (start + len > limit) throw derMalformed(what, `${field} runs past the end`);
  return { tag, start, end: start + len };
}

/** The elements directly inside a constructed value (at most 1024). */
export function children(buf: Uint8Array, span: Span, what = 'DER'): Span[] {
  const out: Span[] = [];
  for (let off = span.start; off < span.end; ) {
    const c = readSpan(buf, off, span.end, what, 'element');
    out.push(c);
    off = c.end;
    if (out.length > 1024) throw derMalformed(what, 'too many elements');
  }
  return out;
}

/** Decode OID content bytes `buf[start..end)` to dotted text (X.690 §8.19). */
export function oidText(buf: Uint8Array, start = 0, end = buf.length): string {
  const arcs: number[] = [];
  let v = 0;
  for (let i = start; i < end; i++) {
    const b = buf[i] as number;
    v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      if (arcs.length === 0) arcs.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else arcs.push(v);
      v = 0;
    }
  }
  return arcs.join('.');
}

/** The dotted text of an OBJECT IDENTIFIER span. */
export function spanOid(buf: Uint8Array, span: Span, what = 'DER'): string {
  if (span.tag !== TAG.OID || span.end === span.start) throw derMalformed(what, 'not an OBJECT IDENTIFIER');
  return oidText(buf, span.start, span.end);
}

// ---- reader: sequential ------------------------------------------------------------------------

/** One element read from DER: its tag, its content and the whole encoding. */
export interface Tlv {
  readonly tag: number;
  readonly content: Buffer;
  readonly raw: Buffer;
}

/** Sequential reader over DER bytes. Every read checks bounds; errors name `what` is being read. */
export class DerReader {
  readonly #buf: Buffer;
  readonly #what: string;
  #off = 0;

  constructor(bytes: Uint8Array, what = 'DER') {
    this.#buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#what = what;
  }

  get done(): boolean {
    return this.#off >= this.#buf.length;
  }

  peekTag(): number | undefined {
    return this.#buf[this.#off];
  }

  /** Read the next TLV; with `tag`, it must have that tag. */
  read(tag?: number, field = 'element'): Tlv {
    const from = this.#off;
    const buf = this.#buf;
    const s = readSpan(buf, from, buf.length, this.#what, field);
    if (tag !== undefined && s.tag !== tag)
      throw derMalformed(
        this.#what,
        `${field}: expected tag 0x${tag.toString(16)}, got 0x${s.tag.toString(16)}`,
      );
    this.#off = s.end;
    return { tag: s.tag, content: buf.subarray(s.start, s.end), raw: buf.subarray(from, s.end) };
  }

  /** Read an optional element with this tag, or undefined when the next tag differs. */
  optional(tag: number, field?: string): Tlv | undefined {
    return this.peekTag() === tag ? this.read(tag, field) : undefined;
  }

  /** Throw when bytes remain: structures are consumed exactly. */
  end(field = 'structure'): void {
    if (!this.done) throw derMalformed(this.#what, `trailing bytes after ${field}`);
  }
}

/** Decode a UTCTime or GeneralizedTime (Zulu, whole seconds) to epoch ms. */
export function parseTime(t: Tlv, what = 'time'): number {
  const s = t.content.toString('ascii');
  const utc = t.tag === TAG.UTC_TIME ? /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s) : null;
  const gen = t.tag === TAG.GENERALIZED_TIME ? /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s) : null;
  const m = utc ?? gen;
  if (m === null) throw derMalformed(what, 'not a UTCTime or GeneralizedTime in Zulu whole seconds');
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const year = utc !== null ? (y < 50 ? 2000 + y : 1900 + y) : y;
  const ms = Date.UTC(year, mo - 1, d, h, mi, se);
  if (Number.isNaN(ms) || mo < 1 || mo > 12 || d < 1 || d > 31) throw derMalformed(what, 'invalid date');
  return ms;
}
