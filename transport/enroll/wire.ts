/**
 * The enrollment wire: a tiny CBOR-over-TLS exchange, chosen over MQTT because an enrolling
 * device has no identity for the broker to authorize and needs exactly one round trip.
 * Each frame is a 4-byte big-endian length and a CBOR map, at most 16 KiB.
 *
 * 1. gateway → device `Hello { v: 1, trustDomain, roots: [DER] }` right after the handshake;
 *    the device checks a root against its token's fingerprint (or its provisioned fingerprint)
 *    and the gateway's certificate against that root, before it sends anything;
 * 2. device → gateway `Request { method: 'token', token, csr } | { method: 'factory', csr }`
 *    (factory: the TLS client certificate is the factory certificate);
 * 3. gateway → device `Answer { spiffeId, chain: [DER], roots: [DER], notAfter } | { error: { code, message } }`,
 *    then the gateway closes.
 */
import type { Socket } from 'node:net';
import { decode, encode } from 'cbor-x';
import { TransportError } from '../errors.ts';

export const MAX_FRAME = 16 * 1024;

export interface Hello {
  readonly v: 1;
  readonly trustDomain: string;
  readonly roots: Uint8Array[];
}
export type EnrollRequest =
  | { readonly method: 'token'; readonly token: string; readonly csr: Uint8Array }
  | { readonly method: 'factory'; readonly csr: Uint8Array };
export type EnrollAnswer =
  | {
      readonly spiffeId: string;
      readonly chain: Uint8Array[];
      readonly roots: Uint8Array[];
      readonly notAfter: number;
    }
  | { readonly error: { readonly code: string; readonly message: string } };

export function writeFrame(socket: Socket, value: unknown): void {
  const body = encode(value);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  socket.write(Buffer.concat([head, body]));
}

/**
 * Read frames from a socket: `next()` resolves with the next decoded frame, rejects with
 * `ERR_ENROLL_PROTOCOL` on an oversized or undecodable frame or when the socket ends first.
 */
export class FrameReader {
  #buf = Buffer.alloc(0);
  #waiting: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined;
  #ended: Error | undefined;
  readonly #socket: Socket;
  readonly #onData = (d: Buffer): void => {
    // Bounded: at most one frame (MAX_FRAME + 4 bytes) is ever held; past that the reader fails
    // and keeps nothing more of what arrives.
    if (this.#ended !== undefined) return;
    if (this.#buf.length + d.length > MAX_FRAME + 4) {
      this.#buf = Buffer.alloc(0);
      this.#fail(new TransportError('ERR_ENROLL_PROTOCOL', `more than ${MAX_FRAME + 4} bytes buffered`));
      return;
    }
    this.#buf = Buffer.concat([this.#buf, d]);
    this.#pump();
  };
  readonly #onEnd = (): void =>
    this.#fail(new TransportError('ERR_ENROLL_PROTOCOL', 'connection closed before a frame arrived'));
  readonly #onError = (err: Error): void =>
    this.#fail(new TransportError('ERR_ENROLL_PROTOCOL', `connection error: ${err.message}`));

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
    socket.on('error', this.#onError);
  }

  /** Stop reading: the listeners are removed and the buffer dropped. */
  dispose(): void {
    this.#socket.off('data', this.#onData);
    this.#socket.off('end', this.#onEnd);
    this.#socket.off('close', this.#onEnd);
    this.#socket.off('error', this.#onError);
    this.#buf = Buffer.alloc(0);
    this.#fail(new TransportError('ERR_ENROLL_PROTOCOL', 'reader disposed'));
  }

  next(): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
      this.#pump();
    });
  }

  #fail(err: Error): void {
    this.#ended ??= err;
    this.#pump();
  }

  #pump(): void {
    const w = this.#waiting;
    if (w === undefined) return;
    if (this.#buf.length >= 4) {
      const len = this.#buf.readUInt32BE(0);
      if (len > MAX_FRAME) {
        this.#waiting = undefined;
        w.reject(new TransportError('ERR_ENROLL_PROTOCOL', `frame of ${len} bytes exceeds ${MAX_FRAME}`));
        return;
      }
      if (this.#buf.length >= 4 + len) {
        const body = this.#buf.subarray(4, 4 + len);
        this.#buf = this.#buf.subarray(4 + len);
        this.#waiting = undefined;
        try {
          w.resolve(decode(body));
        } catch {
          w.reject(new TransportError('ERR_ENROLL_PROTOCOL', 'frame is not CBOR'));
        }
        return;
      }
    }
    if (this.#ended !== undefined) {
      this.#waiting = undefined;
      w.reject(this.#ended);
    }
  }
}

const isBytesList = (v: unknown): v is Uint8Array[] =>
  Array.isArray(v) && v.length > 0 && v.length <= 8 && v.every((x) => x instanceof Uint8Array);

export function asHello(v: unknown): Hello {
  const h = v as Partial<Hello> | null;
  if (
    typeof h !== 'object' ||
    h === null ||
    h.v !== 1 ||
    typeof h.trustDomain !== 'string' ||
    !isBytesList(h.roots)
  ) {
    throw new TransportError('ERR_ENROLL_PROTOCOL', 'malformed hello from the gateway');
  }
  return { v: 1, trustDomain: h.trustDomain, roots: h.roots };
}

export function asRequest(v: unknown): EnrollRequest {
  const r = v as Record<string, unknown> | null;
  if (typeof r !== 'object' || r === null || !(r.csr instanceof Uint8Array) || r.csr.length > 4096) {
    throw new TransportError('ERR_ENROLL_PROTOCOL', 'malformed enrollment request');
  }
  if (r.method === 'token' && typeof r.token === 'string' && r.token.length <= 256) {
    return { method: 'token', token: r.token, csr: r.csr };
  }
  if (r.method === 'factory') return { method: 'factory', csr: r.csr };
  throw new TransportError('ERR_ENROLL_PROTOCOL', 'unknown enrollment method');
}

export function asAnswer(v: unknown): EnrollAnswer {
  const a = v as Record<string, unknown> | null;
  if (typeof a === 'object' && a !== null) {
    const e = a.error as { code?: unknown; message?: unknown } | undefined;
    if (typeof e === 'object' && e !== null && typeof e.code === 'string') {
      return { error: { code: e.code, message: String(e.message ?? '') } };
    }
    if (
      typeof a.spiffeId === 'string' &&
      isBytesList(a.chain) &&
      isBytesList(a.roots) &&
      typeof a.notAfter === 'number'
    ) {
      return { spiffeId: a.spiffeId, chain: a.chain, roots: a.roots, notAfter: a.notAfter };
    }
  }
  throw new TransportError('ERR_ENROLL_PROTOCOL', 'malformed enrollment answer');
}
