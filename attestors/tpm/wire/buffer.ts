/**
 * Big-endian, packed TPM 2.0 marshalling (Part 2 §5): a growing `Writer` and a bounds-checked
 * `Reader`. Every read past the end throws `ERR_TPM_MALFORMED`, so a truncated or lying response
 * can never read outside its bytes.
 */
import { AttestorError } from '../../errors.ts';

export class Writer {
  #buf = Buffer.alloc(256);
  #len = 0;

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = Buffer.alloc(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }

  u8(v: number): this {
    this.#room(1);
    this.#buf.writeUInt8(v & 0xff, this.#len);
    this.#len += 1;
    return this;
  }
  u16(v: number): this {
    this.#room(2);
    this.#buf.writeUInt16BE(v & 0xffff, this.#len);
    this.#len += 2;
    return this;
  }
  u32(v: number): this {
    this.#room(4);
    this.#buf.writeUInt32BE(v >>> 0, this.#len);
    this.#len += 4;
    return this;
  }
  i32(v: number): this {
    this.#room(4);
    this.#buf.writeInt32BE(v | 0, this.#len);
    this.#len += 4;
    return this;
  }
  u64(v: bigint): this {
    this.#room(8);
    this.#buf.writeBigUInt64BE(v, this.#len);
    this.#len += 8;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.#room(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    return this;
  }
  /** TPM2B: u16 size + bytes. */
  tpm2b(b: Uint8Array): this {
    if (b.length > 0xffff) throw new RangeError('TPM2B larger than 65535 bytes');
    return this.u16(b.length).bytes(b);
  }
  /** A TPM2B whose contents are written by `fill` (size computed afterwards). */
  sized(fill: (w: Writer) => void): this {
    const inner = new Writer();
    fill(inner);
    return this.tpm2b(inner.finish());
  }
  get length(): number {
    return this.#len;
  }
  finish(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}

export class Reader {
  readonly #buf: Buffer;
  #off: number;
  readonly #end: number;
  readonly #what: string;

  constructor(buf: Uint8Array, what = 'TPM data', start = 0, end = buf.length) {
    this.#buf = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    this.#off = start;
    this.#end = end;
    this.#what = what;
  }

  #need(n: number, field: string): void {
    if (this.#off + n > this.#end) {
      throw new AttestorError(
        'ERR_TPM_MALFORMED',
        `${this.#what}: truncated reading ${field} (need ${n} bytes at offset ${this.#off}, have ${this.#end - this.#off})`,
      );
    }
  }

  u8(field = 'u8'): number {
    this.#need(1, field);
    const v = this.#buf.readUInt8(this.#off);
    this.#off += 1;
    return v;
  }
  u16(field = 'u16'): number {
    this.#need(2, field);
    const v = this.#buf.readUInt16BE(this.#off);
    this.#off += 2;
    return v;
  }
  u32(field = 'u32'): number {
    this.#need(4, field);
    const v = this.#buf.readUInt32BE(this.#off);
    this.#off += 4;
    return v;
  }
  i32(field = 'i32'): number {
    this.#need(4, field);
    const v = this.#buf.readInt32BE(this.#off);
    this.#off += 4;
    return v;
  }
  u64(field = 'u64'): bigint {
    this.#need(8, field);
    const v = this.#buf.readBigUInt64BE(this.#off);
    this.#off += 8;
    return v;
  }
  bytes(n: number, field = 'bytes'): Buffer {
    this.#need(n, field);
    const v = Buffer.from(this.#buf.subarray(this.#off, this.#off + n));
    this.#off += n;
    return v;
  }
  /** TPM2B: u16 size + bytes; `max` bounds the size a structure may declare. */
  tpm2b(field = 'TPM2B', max = 0xffff): Buffer {
    const n = this.u16(`${field}.size`);
    if (n > max)
      throw new AttestorError('ERR_TPM_MALFORMED', `${this.#what}: ${field} size ${n} exceeds ${max}`);
    return this.bytes(n, field);
  }
  /** A reader over the contents of a TPM2B, advancing this reader past it. */
  sized(field = 'TPM2B'): Reader {
    const n = this.u16(`${field}.size`);
    this.#need(n, field);
    const r = new Reader(this.#buf, `${this.#what}/${field}`, this.#off, this.#off + n);
    this.#off += n;
    return r;
  }
  get offset(): number {
    return this.#off;
  }
  get remaining(): number {
    return this.#end - this.#off;
  }
  /** Throws when bytes are left over: structures must be consumed exactly. */
  done(field = 'structure'): void {
    if (this.#off !== this.#end) {
      throw new AttestorError(
        'ERR_TPM_MALFORMED',
        `${this.#what}: ${this.#end - this.#off} trailing bytes after ${field}`,
      );
    }
  }
}
