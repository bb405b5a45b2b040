/**
 * The client of the live operator API (`admin.ts`): what `edgeward issuer <command>` uses. Over
 * the Unix socket by default, or over mTLS with an operator certificate. A socket that is absent
 * or refuses is ERR_ISSUER_NOT_RUNNING (the CLI never falls back to opening the store); no answer
 * within the timeout is ERR_ISSUER_ADMIN_TIMEOUT; a refusal comes back with the issuer's code.
 *
 * @example
 * ```ts
 * const admin = adminClient({ socket: '/run/edgeward-issuer/admin.sock' });
 * const { token } = await admin.post<{ token: string }>('/tokens', { name: 'gw-1', ttlMs: 600_000 });
 * ```
 */
import { request as httpRequest, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { EdgewardError } from '../core/error.ts';
import { IssuerError } from '../errors.ts';
import { ADMIN_MAX_BODY_BYTES, ADMIN_PREFIX } from './admin.ts';

export type AdminTarget =
  | { readonly socket: string }
  | {
      readonly host: string;
      readonly port: number;
      /** PEM: the operator certificate and key, the CA that signed the issuer's TLS certificate. */
      readonly cert: string | Buffer;
      readonly key: string | Buffer;
      readonly ca: string | Buffer;
    };

export interface AdminClient {
  get<T>(path: string): Promise<T>;
  post<T>(path: string, body?: unknown): Promise<T>;
}

const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

export function adminClient(target: AdminTarget, timeoutMs = 15_000): AdminClient {
  const where = 'socket' in target ? target.socket : `${target.host}:${target.port}`;
  const call = <T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const payload = method === 'POST' ? Buffer.from(JSON.stringify(body ?? {})) : undefined;
      if (payload !== undefined && payload.length > ADMIN_MAX_BODY_BYTES)
        return reject(new IssuerError('ERR_ISSUER_BODY_TOO_LARGE', 'admin request too large'));
      const base: RequestOptions = {
        method,
        path: `${ADMIN_PREFIX}${path}`,
        agent: false,
        headers:
          payload === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': payload.length },
      };
      const req =
        'socket' in target
          ? httpRequest({ ...base, socketPath: target.socket })
          : httpsRequest({
              ...base,
              host: target.host,
              port: target.port,
              cert: target.cert,
              key: target.key,
              ca: target.ca,
            });
      const timer = setTimeout(() => {
        req.destroy();
        reject(
          new IssuerError(
            'ERR_ISSUER_ADMIN_TIMEOUT',
            `no answer from the issuer at ${where} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ANSWER_BYTES) req.destroy(new Error('admin answer too large'));
          else chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          let parsed: { result?: T; error?: { code?: unknown; message?: unknown } };
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return reject(
              new IssuerError(
                'ERR_ISSUER_INTERNAL',
                `the admin API at ${where} answered no JSON (${res.statusCode})`,
              ),
            );
          }
          if (parsed.error !== undefined) {
            const code = typeof parsed.error.code === 'string' ? parsed.error.code : 'ERR_ISSUER_INTERNAL';
            return reject(new EdgewardError(code, String(parsed.error.message ?? code)));
          }
          resolve(parsed.result as T);
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          reject(new IssuerError('ERR_ISSUER_INTERNAL', `admin answer interrupted: ${e.message}`));
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED')
          reject(
            new IssuerError(
              'ERR_ISSUER_NOT_RUNNING',
              `no issuer answers on ${where} (${e.code}): start it, or pass --socket; with the issuer stopped, --offline acts on its store`,
              {},
              { cause: e },
            ),
          );
        else if (e.code === 'EACCES')
          reject(
            new IssuerError(
              'ERR_ISSUER_ADMIN_FORBIDDEN',
              `${where}: permission denied (the socket is 0600: run as its owner)`,
              {},
              { cause: e },
            ),
          );
        else reject(new IssuerError('ERR_ISSUER_NOT_RUNNING', `${where}: ${e.message}`, {}, { cause: e }));
      });
      req.end(payload);
    });
  return { get: (p) => call('GET', p), post: (p, b) => call('POST', p, b) };
}
