/**
 * The HTTP side of the enrollment listener (est-server.ts): reading and checking a request (the
 * bounded CSR body `csrOf`, `basicAuth`, the per-address `RateLimiter`) and writing its answer
 * (`sendCerts` for certs-only PKCS#7, `refuse` with the status of each refusal code in `STATUS`
 * or of an `HttpRefusal`, `writeAnswer` as plain-text `CODE: reason`); every answer closes its
 * connection once flushed (`closeAfterAnswer`).
 *
 * @example
 * ```ts
 * const csr = await csrOf(req); // ERR_ENROLL_BUDGET over MAX_BODY_BYTES, ERR_ENROLL_CSR_INVALID
 * sendCerts(res, base64Lines(certsOnly(chain)), PKCS7_CERTS_ONLY);
 * ```
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isEdgewardError } from '../../runtime/core/error.ts';
import type { Logger } from '../../runtime/core/logger.ts';
import { parseCsr } from '../../runtime/svid/csr.ts';
import { TransportError, type TransportErrorCode } from '../errors.ts';
import { decodeBase64Body } from './pkcs7.ts';

/** Largest request body (a base64 CSR is about 0.6 KiB for P-256, 1.5 KiB for RSA 4096). */
export const MAX_BODY_BYTES = 16 * 1024;

/** HTTP status of each refusal code; anything else is 503 (the gateway cannot sign now). */
export const STATUS: Partial<Record<TransportErrorCode, number>> = {
  ERR_ENROLL_TOKEN_INVALID: 401,
  ERR_ENROLL_CERT_REQUIRED: 401,
  ERR_ENROLL_PROTOCOL: 400,
  ERR_ENROLL_CSR_INVALID: 400,
  ERR_ENROLL_CSR_IDENTITY: 403,
  ERR_ENROLL_DEVICE_REVOKED: 403,
  ERR_ENROLL_FACTORY_REFUSED: 403,
  ERR_ENROLL_BUDGET: 413,
  ERR_ENROLL_RATE_LIMITED: 429,
  ERR_ENROLL_REFUSED: 503,
};

/** A refusal with an HTTP status other than its code's default (404, 405, 415, 408). */
export class HttpRefusal extends TransportError {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(
    status: number,
    code: TransportErrorCode,
    message: string,
    headers: Record<string, string> = {},
  ) {
    super(code, message);
    this.status = status;
    this.headers = headers;
  }
}

/** Fixed one-minute windows per address; the table is bounded. */
export class RateLimiter {
  readonly #seen = new Map<string, { start: number; count: number }>();
  readonly #perMinute: number;
  constructor(perMinute: number) {
    this.#perMinute = perMinute;
  }
  allow(addr: string, now: number): boolean {
    let e = this.#seen.get(addr);
    if (e === undefined || now - e.start >= 60_000) {
      if (this.#seen.size > 10_000) this.#seen.clear();
      e = { start: now, count: 0 };
      this.#seen.set(addr, e);
    }
    e.count++;
    return e.count <= this.#perMinute;
  }
}

/** The request body, bounded, base64-decoded and parsed as a verified CSR. */
export async function csrOf(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  const tooBig = (): TransportError =>
    new TransportError('ERR_ENROLL_BUDGET', `request body over ${MAX_BODY_BYTES} bytes`);
  if (declared > MAX_BODY_BYTES) throw tooBig();
  const parts: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      size += d.length;
      if (size > MAX_BODY_BYTES) {
        req.off('data', onData);
        req.pause();
        reject(tooBig());
        return;
      }
      parts.push(d);
    };
    req.on('data', onData);
    req.once('end', () => resolve());
    req.once('error', (err) => reject(new TransportError('ERR_ENROLL_PROTOCOL', `request: ${err.message}`)));
  });
  const der = decodeBase64Body(Buffer.concat(parts));
  try {
    parseCsr(der);
  } catch (cause) {
    const code = isEdgewardError(cause) ? cause.code : 'unknown';
    throw new TransportError('ERR_ENROLL_CSR_INVALID', `CSR refused (${code}): ${(cause as Error).message}`, {
      cause,
    });
  }
  return der;
}

/** Answers a failed request with its status and `CODE: reason`, and logs the refusal. */
export function refuse(logger: Logger, req: IncomingMessage, res: ServerResponse, err: unknown): void {
  const code: TransportErrorCode = err instanceof TransportError ? err.code : 'ERR_ENROLL_REFUSED';
  const status = err instanceof HttpRefusal ? err.status : (STATUS[code] ?? 503);
  const message = isEdgewardError(err) ? err.message : 'enrollment failed';
  logger.warn('enrollment refused', {
    code,
    status,
    reason: (err as Error).message,
    path: (req.url ?? '').slice(0, 100),
    remote: req.socket.remoteAddress,
  });
  const headers: Record<string, string> = err instanceof HttpRefusal ? { ...err.headers } : {};
  if (status === 429) headers['Retry-After'] ??= '60';
  if (status === 401 && code === 'ERR_ENROLL_TOKEN_INVALID')
    headers['WWW-Authenticate'] = 'Basic realm="edgeward enrollment", charset="UTF-8"';
  if (!res.headersSent) writeAnswer(res, status, code, message, headers);
}

/** `Authorization: Basic base64(user:password)`, or undefined when there is none. */
export function basicAuth(header: string | undefined): { user: string; password: string } | undefined {
  if (header === undefined) return undefined;
  const m = /^Basic[ ]+([A-Za-z0-9+/=]+)[ ]*$/i.exec(header);
  const text = m === null ? '' : Buffer.from(m[1] as string, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon <= 0)
    throw new TransportError('ERR_ENROLL_TOKEN_INVALID', 'Authorization is not HTTP Basic device-id:token');
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

export function sendCerts(res: ServerResponse, body: string, type: string): void {
  res.writeHead(200, {
    'Content-Type': type,
    'Content-Transfer-Encoding': 'base64',
    'Content-Length': Buffer.byteLength(body),
    Connection: 'close',
  });
  res.end(body);
  closeAfterAnswer(res);
}

/** A refusal: `CODE: reason` as plain text, then the connection closes. */
export function writeAnswer(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): void {
  const body = `${code}: ${message}\n`;
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    Connection: 'close',
  });
  res.end(body);
  closeAfterAnswer(res);
}

/** Once the answer is flushed the socket is destroyed, whatever the client still sends. */
export function closeAfterAnswer(res: ServerResponse): void {
  const socket = res.socket;
  res.once('finish', () => socket?.end(() => socket.destroy()));
}
