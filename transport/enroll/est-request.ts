/**
 * One EST request from a device to a gateway's enrollment listener (est-client.ts): `call` sends
 * it over its own `node:https` connection (`Connection: close`, no agent), verifying the gateway
 * against the given roots by its chain (`checkGateway`, not by host name) or, for the bootstrap
 * `cacerts`, not at all; it presents a client certificate when given one, bounds the answer
 * (64 KiB) and the wait. `certsOf` reads a 200 certs-only answer, or turns a refusal's
 * `CODE: reason` body into a `TransportError` with the gateway's code when the device knows it.
 *
 * @example
 * ```ts
 * const roots = certsOf(await call({ host, port, method: 'GET', path: '/.well-known/est/cacerts', timeoutMs: 15_000 }));
 * ```
 */
import { type KeyObject, X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { TransportError, type TransportErrorCode } from '../errors.ts';
import { decodeBase64Body, parseCertsOnly } from './pkcs7.ts';

/** Largest answer read from a gateway (a chain of a few certificates is a few KiB). */
const MAX_ANSWER_BYTES = 64 * 1024;

/** Codes a gateway answers with that keep their meaning on the device. */
const KNOWN: readonly TransportErrorCode[] = [
  'ERR_ENROLL_TOKEN_INVALID',
  'ERR_ENROLL_RATE_LIMITED',
  'ERR_ENROLL_FACTORY_REFUSED',
  'ERR_ENROLL_PROTOCOL',
  'ERR_ENROLL_DEVICE_REVOKED',
  'ERR_ENROLL_BUDGET',
  'ERR_ENROLL_CSR_INVALID',
  'ERR_ENROLL_CSR_IDENTITY',
  'ERR_ENROLL_CERT_REQUIRED',
];

export interface Answer {
  readonly status: number;
  readonly type: string;
  readonly body: Buffer;
}

export interface Call {
  readonly host: string;
  readonly port: number;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** PEM roots to verify the gateway against; none = not verified (the bootstrap `cacerts`). */
  readonly ca?: string;
  /** Called with the gateway's chain (leaf first) before anything is sent; throws to refuse. */
  readonly checkGateway?: (chain: X509Certificate[]) => void;
  readonly cert?: string;
  readonly key?: KeyObject;
  readonly timeoutMs: number;
}

function chainOf(peer: PeerCertificate): X509Certificate[] {
  const out: X509Certificate[] = [];
  let c: PeerCertificate | undefined = peer;
  while (c?.raw !== undefined && out.length < 8) {
    out.push(new X509Certificate(c.raw));
    const next: PeerCertificate | undefined = (c as { issuerCertificate?: PeerCertificate })
      .issuerCertificate;
    if (next === undefined || next === c || next.fingerprint256 === c.fingerprint256) break;
    c = next;
  }
  return out;
}

export function call(c: Call): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: c.host,
        port: c.port,
        method: c.method,
        path: c.path,
        headers: {
          ...c.headers,
          Connection: 'close',
          ...(c.body === undefined ? {} : { 'Content-Length': String(Buffer.byteLength(c.body)) }),
        },
        agent: false,
        minVersion: 'TLSv1.2',
        ...(c.ca === undefined
          ? { rejectUnauthorized: false }
          : {
              ca: c.ca,
              rejectUnauthorized: true,
              // The gateway is identified by its SPIFFE ID, not by the host name it is reached at.
              checkServerIdentity: (_host: string, peer: PeerCertificate) => {
                try {
                  c.checkGateway?.(chainOf(peer));
                  return undefined;
                } catch (err) {
                  return err as Error;
                }
              },
            }),
        ...(c.cert === undefined || c.key === undefined
          ? {}
          : { cert: c.cert, key: c.key.export({ type: 'pkcs8', format: 'pem' }) }),
      },
      (res: IncomingMessage) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => {
          size += d.length;
          if (size > MAX_ANSWER_BYTES) {
            req.destroy(new TransportError('ERR_ENROLL_PROTOCOL', `answer over ${MAX_ANSWER_BYTES} bytes`));
            return;
          }
          parts.push(d);
        });
        res.once('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            type: String(res.headers['content-type'] ?? ''),
            body: Buffer.concat(parts),
          }),
        );
        res.once('error', reject);
      },
    );
    req.setTimeout(c.timeoutMs, () =>
      req.destroy(
        new TransportError('ERR_ENROLL_PROTOCOL', `no answer from ${c.host}:${c.port} in ${c.timeoutMs} ms`),
      ),
    );
    req.once('error', (err) => {
      if (isEdgewardError(err)) reject(err);
      else
        reject(
          new TransportError('ERR_ENROLL_PROTOCOL', `cannot reach ${c.host}:${c.port}: ${err.message}`, {
            cause: err,
          }),
        );
    });
    req.end(c.body);
  });
}

/** The certificates of a 200 certs-only answer, or the gateway's refusal as a typed error. */
export function certsOf(a: Answer): X509Certificate[] {
  if (a.status !== 200) {
    const text = a.body.toString('utf8').slice(0, 500).trim();
    const m = /^(ERR_[A-Z0-9_]+): (.*)$/s.exec(text);
    const code = m?.[1] as TransportErrorCode | undefined;
    throw new TransportError(
      code !== undefined && KNOWN.includes(code) ? code : 'ERR_ENROLL_REFUSED',
      `gateway refused enrollment (HTTP ${a.status}): ${text}`,
    );
  }
  if (!/^application\/pkcs7-mime\b/i.test(a.type))
    throw new TransportError(
      'ERR_ENROLL_PROTOCOL',
      `answer is ${a.type || 'untyped'}, not application/pkcs7-mime`,
    );
  return parseCertsOnly(decodeBase64Body(a.body)).map((d, i) => {
    try {
      return new X509Certificate(d);
    } catch (err) {
      // A well-formed PKCS#7 may still carry a SEQUENCE that is no certificate.
      throw new TransportError(
        'ERR_ENROLL_PROTOCOL',
        `certificate ${i} of the answer: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  });
}
