/**
 * The leanest correct gRPC caller of one server-streaming method over a Unix socket, for
 * `bench/workload.bench.ts`: the connection preface, an empty SETTINGS, one HEADERS frame (HPACK
 * literals, no dynamic table) and one DATA frame with an empty request message, all in a single
 * write; the server's SETTINGS are acknowledged; frames are read until the first whole response
 * message. So the time measured is the server's and the kernel's: a client library's session
 * setup (node:http2's is ~0.5 ms of CPU and its own garbage here) is not counted as the agent's.
 *
 * Not a general client: no flow control (the first message fits the default 64 KiB window), no
 * CONTINUATION (the server's headers are not decoded, only their END_STREAM flag is read: a
 * trailers-only answer is a gRPC error).
 */
import net from 'node:net';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const GOAWAY = 0x7;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK string literal, not Huffman-coded (the lengths here are all under 127). */
const str = (s: string): Buffer => Buffer.concat([Buffer.from([s.length]), Buffer.from(s, 'latin1')]);
/** Literal header field without indexing: a static-table name (index < 15), or a new name (0). */
const literal = (nameIndex: number, value: string, name?: string): Buffer =>
  Buffer.concat([Buffer.from([nameIndex]), ...(name === undefined ? [] : [str(name)]), str(value)]);

/** The bytes of one call of `path` with the given metadata, ready to write on a new connection. */
export function callBytes(path: string, metadata: Record<string, string>): Buffer {
  const block = Buffer.concat([
    Buffer.from([0x83, 0x86]), // :method POST, :scheme http (static table 3, 6)
    literal(0x04, path), // :path
    literal(0x01, 'localhost'), // :authority
    Buffer.concat([Buffer.from([0x0f, 0x10]), str('application/grpc')]), // content-type (static 31)
    literal(0, 'trailers', 'te'),
    ...Object.entries(metadata).map(([k, v]) => literal(0, v, k)),
  ]);
  return Buffer.concat([
    PREFACE,
    frame(SETTINGS, 0, 0, Buffer.alloc(0)),
    frame(HEADERS, END_HEADERS, 1, block),
    frame(DATA, END_STREAM, 1, Buffer.alloc(5)), // an empty message: not compressed, length 0
  ]);
}

const SETTINGS_ACK = frame(SETTINGS, ACK, 0, Buffer.alloc(0));

/**
 * Connect to `socket`, write `bytes` (from `callBytes`), and resolve with the first response
 * message (its protobuf bytes) and the ms from connect to its last byte.
 */
export function firstMessage(socket: string, bytes: Buffer): Promise<{ ms: number; message: Buffer }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    let pending: Buffer = Buffer.alloc(0);
    let body: Buffer = Buffer.alloc(0);
    const conn = net.connect(socket, () => conn.write(bytes));
    const fail = (why: string): void => {
      conn.destroy();
      reject(new Error(why));
    };
    conn.on('error', (err) => fail(err.message));
    conn.on('close', () => fail('closed before the first message'));
    conn.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 9) {
        const len = pending.readUIntBE(0, 3);
        if (pending.length < 9 + len) return;
        const type = pending[3];
        const flags = pending[4] as number;
        const payload = pending.subarray(9, 9 + len);
        pending = pending.subarray(9 + len);
        if (type === SETTINGS && (flags & ACK) === 0) conn.write(SETTINGS_ACK);
        else if (type === HEADERS && (flags & END_STREAM) !== 0)
          return fail('trailers-only answer (an error)');
        else if (type === RST_STREAM || type === GOAWAY) return fail(`frame type ${type}`);
        else if (type === DATA) {
          body = body.length === 0 ? Buffer.from(payload) : Buffer.concat([body, payload]);
          if (body.length >= 5 && body.length >= 5 + body.readUInt32BE(1)) {
            const ms = performance.now() - t0;
            conn.removeAllListeners('close');
            conn.destroy();
            return resolve({ ms, message: body.subarray(5, 5 + body.readUInt32BE(1)) });
          }
        }
      }
    });
  });
}
