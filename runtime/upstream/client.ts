/**
 * The HTTPS + CBOR upstream client (protocol.ts). One `Upstream` holds every configured
 * endpoint; each request opens its own TLS connection (no pooling: an SVID rotation must never
 * reuse a connection authenticated with the previous key), verifies the issuer's certificate
 * against the configured roots, and presents the gateway SVID when asked (mTLS renewal).
 * TLS contexts are built once per identity and reused (STYLE.md §4).
 *
 * Every failure carries `fields.reason`, the underlying cause in one word, for the logs and
 * `edgeward status`: the network or TLS error code (`ECONNREFUSED`, `ECONNRESET`, `ENOTFOUND`,
 * `CERT_HAS_EXPIRED`, `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `ERR_TLS_CERT_ALTNAME_INVALID`, ...),
 * `timeout`, `HTTP <status>`, `oversized`, `not-cbor`.
 *
 * @example
 * ```ts
 * const upstream = httpsUpstream({ endpoints: ['https://issuer:8443'], ca: [rootPem], clock, timeoutMs: 10_000 });
 * const begin = await upstream.endpoints[0].post<AttestBeginResponse>(PATHS.attestBegin, req);
 * ```
 */
import { type RequestOptions, request } from 'node:https';
import { createSecureContext, type SecureContext } from 'node:tls';
import { decode, encode } from 'cbor-x';
import type { Clock } from '../core/clock.ts';
import { AgentError, type AgentErrorCode } from '../errors.ts';
import type { X509Svid } from '../sources/types.ts';
import { CBOR_CONTENT_TYPE, type ErrorBody, MAX_BODY_BYTES } from './protocol.ts';
import type { CallOptions, Upstream, UpstreamEndpoint } from './types.ts';

/** Responses carry certificate chains and a bundle: allow more than a request body. */
const MAX_RESPONSE_BYTES = 16 * MAX_BODY_BYTES;

export interface HttpsUpstreamOptions {
  readonly endpoints: readonly string[];
  /** PEM roots the issuer's TLS certificate must chain to; default: the system roots. */
  readonly ca?: readonly string[];
  readonly clock: Clock;
  readonly timeoutMs?: number;
}

export function httpsUpstream(o: HttpsUpstreamOptions): Upstream {
  const ca = o.ca === undefined ? undefined : [...o.ca];
  const anonymous = createSecureContext(ca === undefined ? {} : { ca });
  const perSvid = new WeakMap<X509Svid, SecureContext>();
  const contextFor = (svid: X509Svid | undefined): SecureContext => {
    if (svid === undefined) return anonymous;
    let ctx = perSvid.get(svid);
    if (ctx === undefined) {
      ctx = createSecureContext({
        ...(ca === undefined ? {} : { ca }),
        cert: svid.chain.map((c) => c.toString()).join(''),
        key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
      });
      perSvid.set(svid, ctx);
    }
    return ctx;
  };
  const endpoints = o.endpoints.map((url) => endpoint(url, contextFor, o.clock, o.timeoutMs ?? 10_000));
  return { endpoints, close: async () => {} };
}

function endpoint(
  base: string,
  contextFor: (svid: X509Svid | undefined) => SecureContext,
  clock: Clock,
  timeoutMs: number,
): UpstreamEndpoint {
  const url = new URL(base);
  if (url.protocol !== 'https:') throw new TypeError(`upstream endpoint must be https: ${base}`);
  const call = <T>(method: 'GET' | 'POST', path: string, body: unknown, opts: CallOptions = {}): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const payload = method === 'POST' ? encode(body) : undefined;
      const fail = (
        code: AgentErrorCode,
        msg: string,
        fields: Record<string, unknown> = {},
        cause?: unknown,
      ) => new AgentError(code, `${base}${path}: ${msg}`, { endpoint: base, path, ...fields }, { cause });
      let done = false;
      const finish = (err: AgentError | undefined, value?: T): void => {
        if (done) return;
        done = true;
        timer.cancel();
        if (err) reject(err);
        else resolve(value as T);
      };
      // `secureContext` is passed through to tls.connect (not in @types/node's RequestOptions).
      const options: RequestOptions & { secureContext: SecureContext } = {
        protocol: 'https:',
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port === '' ? 443 : Number(url.port),
        path: `${url.pathname.replace(/\/$/, '')}${path}`,
        method,
        agent: false,
        secureContext: contextFor(opts.clientSvid),
        headers: {
          accept: CBOR_CONTENT_TYPE,
          ...(payload === undefined
            ? {}
            : { 'content-type': CBOR_CONTENT_TYPE, 'content-length': String(payload.length) }),
        },
      };
      const req = request(options, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy();
            finish(
              fail('ERR_UPSTREAM_PROTOCOL', `response larger than ${MAX_RESPONSE_BYTES} bytes`, {
                reason: 'oversized',
              }),
            );
          } else chunks.push(c);
        });
        res.on('error', (cause) =>
          finish(
            fail('ERR_UPSTREAM_UNREACHABLE', 'response interrupted', { reason: reasonOf(cause) }, cause),
          ),
        );
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const isCbor = (res.headers['content-type'] ?? '').split(';')[0]?.trim() === CBOR_CONTENT_TYPE;
          let decoded: unknown;
          let decodeError: unknown;
          if (isCbor) {
            try {
              decoded = decode(Buffer.concat(chunks));
            } catch (cause) {
              decodeError = cause;
            }
          }
          const isJson = (res.headers['content-type'] ?? '').split(';')[0]?.trim() === 'application/json';
          if (status >= 200 && status < 300 && isJson) {
            // The bundle endpoint answers the SPIFFE bundle itself (JSON text): hand back the text.
            finish(undefined, Buffer.concat(chunks).toString('utf8') as T);
            return;
          }
          if (status >= 200 && status < 300) {
            if (!isCbor || decodeError !== undefined)
              finish(
                fail(
                  'ERR_UPSTREAM_PROTOCOL',
                  'answer is not CBOR',
                  { status, reason: 'not-cbor' },
                  decodeError,
                ),
              );
            else finish(undefined, decoded as T);
            return;
          }
          const remote = (decoded as Partial<ErrorBody> | undefined)?.error;
          const fields = {
            status,
            reason: `HTTP ${status}`,
            remoteCode: typeof remote?.code === 'string' ? remote.code : undefined,
            retryAfterMs: typeof remote?.retryAfterMs === 'number' ? remote.retryAfterMs : undefined,
          };
          const why =
            `${status} ${fields.remoteCode ?? ''} ${typeof remote?.message === 'string' ? remote.message : ''}`.trim();
          finish(fail(codeForStatus(status), why, fields));
        });
      });
      const timer = clock.setTimer('upstream-timeout', timeoutMs, () => {
        req.destroy();
        finish(fail('ERR_UPSTREAM_UNREACHABLE', `no answer within ${timeoutMs} ms`, { reason: 'timeout' }));
      });
      req.on('error', (cause) =>
        finish(fail('ERR_UPSTREAM_UNREACHABLE', cause.message, { reason: reasonOf(cause) }, cause)),
      );
      req.end(payload);
    });
  return {
    url: base,
    post: (path, body, opts) => call('POST', path, body, opts),
    get: (path, opts) => call('GET', path, undefined, opts),
  };
}

/** The network/TLS cause of a socket error in one word: its `code` (Node and OpenSSL codes), else its message. */
export function reasonOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  return err instanceof Error ? err.message : String(err);
}

/** The agent's code for an issuer's HTTP error status (401/403 refused, 429 rate limited, 5xx unavailable, other 4xx rejected). */
export function codeForStatus(status: number): AgentErrorCode {
  if (status === 401 || status === 403) return 'ERR_UPSTREAM_REFUSED';
  if (status === 429) return 'ERR_UPSTREAM_RATE_LIMITED';
  if (status >= 500) return 'ERR_UPSTREAM_UNAVAILABLE';
  if (status >= 400) return 'ERR_UPSTREAM_REJECTED';
  return 'ERR_UPSTREAM_PROTOCOL';
}
