/**
 * The live operator API: every operator command acts on the RUNNING issuer through this server,
 * never on its store behind its back. Two fronts share one dispatcher:
 *
 * - a Unix socket, mode 0600 in a 0700 directory created for it when missing (what `kubectl
 *   exec` reaches): the file mode is the access control; the actor recorded in the audit is
 *   `local-socket` (Node gives no SO_PEERCRED without a native addon);
 * - optionally an mTLS port: the client must present an operator certificate this issuer signed
 *   (`operator-auth.ts`), the actor is its SPIFFE ID; the listener guard (`listener-guard.ts`)
 *   bounds handshakes (10 s from accept), connections (64) and each request's headers and body
 *   (10 s from the handshake or the last answer), like the gateway front's.
 *
 * JSON in and out (`{ result }` or `{ error: { code, message } }`), bodies at most 16 KiB (413
 * past it, the rest not read), a request must complete within 10 s (the audit `follow` is the client polling `since`).
 *
 * @example
 * ```ts
 * const admin = await startAdminSocket(issuer, { path: '/run/edgeward-issuer/admin.sock', logger });
 * await admin.close();
 * ```
 */
import { chmod, lstat, mkdir, rm } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { dirname } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import type { Logger } from '../core/logger.ts';
import { IssuerError } from '../errors.ts';
import { statusFor, type TlsMaterial } from './http.ts';
import type { Issuer } from './issuer.ts';
import { guardHttpsListener, type ListenerLimits } from './listener-guard.ts';

export const ADMIN_MAX_BODY_BYTES = 16 * 1024;
export const ADMIN_REQUEST_TIMEOUT_MS = 10_000;
export const ADMIN_PREFIX = '/v1/admin';

type Body = Record<string, unknown>;

const bad = (msg: string): IssuerError => new IssuerError('ERR_ISSUER_BAD_REQUEST', msg);

function str(b: Body, k: string, max = 512): string {
  const v = b[k];
  if (typeof v !== 'string' || v.length === 0 || v.length > max)
    throw bad(`${k} must be a string of 1-${max}`);
  return v;
}

function int(v: string | null | undefined, name: string, dflt: number): number {
  if (v === null || v === undefined) return dflt;
  if (!/^\d{1,15}$/.test(v)) throw bad(`${name} must be a non-negative integer`);
  return Number(v);
}

/** One admin request: `by` is who asks (audited with every change). */
export async function dispatch(
  issuer: Issuer,
  method: string,
  url: URL,
  body: Body,
  by: string,
): Promise<unknown> {
  const q = url.searchParams;
  const route = `${method} ${url.pathname.slice(ADMIN_PREFIX.length)}`;
  switch (route) {
    case 'POST /tokens': {
      const ttlMs = body.ttlMs;
      if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < 1 || ttlMs > 30 * 86_400_000)
        throw bad('ttlMs must be 1 ms .. 30 days');
      return { token: await issuer.createJoinToken(str(body, 'name', 64), ttlMs, by) };
    }
    case 'GET /tokens':
      return issuer.listTokens(int(q.get('limit'), 'limit', 1000));
    case 'POST /registrations': {
      const kind = body.kind;
      if (kind !== 'ek' && kind !== 'x509') throw bad("kind must be 'ek' or 'x509'");
      await issuer.register(kind, str(body, 'key', 128), str(body, 'name', 64), by);
      return { registered: body.name };
    }
    case 'POST /gateways/disable':
    case 'POST /gateways/enable': {
      const name = str(body, 'name', 64);
      await issuer.setDisabled(name, route.endsWith('disable'), by);
      return { name, disabled: route.endsWith('disable') };
    }
    case 'POST /gateways/budget': {
      const ms = body.ms;
      if (ms !== null && (typeof ms !== 'number' || !Number.isSafeInteger(ms)))
        throw bad('ms must be an integer or null (the configured budget)');
      const name = str(body, 'name', 64);
      await issuer.setOfflineBudget(name, ms === null ? undefined : ms, by);
      return { name, offlineBudgetMs: ms };
    }
    case 'GET /gateways':
      return issuer.listGateways(q.get('after') ?? '', int(q.get('limit'), 'limit', 1000));
    case 'GET /gateway':
      return issuer.showGateway(q.get('name') ?? '');
    case 'POST /revocations': {
      const kind = body.kind;
      if (kind !== 'spiffe-id' && kind !== 'serial') throw bad("kind must be 'spiffe-id' or 'serial'");
      return issuer.revoke(kind, str(body, 'value', 2048), by);
    }
    case 'GET /revocations':
      return issuer.listRevocations(int(q.get('limit'), 'limit', 1000));
    case 'POST /ca/rotate': {
      // { at: ms } or { afterMs: ms } or { now: true }; none: the earliest safe time.
      const { at, afterMs, now } = body;
      if ([at, afterMs, now].filter((x) => x !== undefined).length > 1)
        throw bad('give at most one of at, afterMs, now');
      if (at !== undefined && (typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0))
        throw bad('at must be a time in ms since the epoch');
      if (
        afterMs !== undefined &&
        (typeof afterMs !== 'number' || !Number.isSafeInteger(afterMs) || afterMs < 0)
      )
        throw bad('afterMs must be a non-negative integer');
      if (now !== undefined && now !== true) throw bad('now must be true');
      return issuer.rotateCa(by, {
        ...(now === true ? { immediate: true } : {}),
        ...(typeof at === 'number' ? { at } : {}),
        ...(typeof afterMs === 'number' ? { afterMs } : {}),
      });
    }
    case 'GET /ca':
      return issuer.caStatus();
    case 'POST /jwt/rotate':
      return issuer.rotateJwtKey(by);
    case 'GET /audit':
      return issuer.auditEvents(
        int(q.get('since'), 'since', 0),
        Math.max(1, int(q.get('limit'), 'limit', 1000)),
      );
    case 'POST /operators': {
      const spki = Buffer.from(str(body, 'spki', 4096), 'base64');
      const ttlMs = body.ttlMs;
      if (typeof ttlMs !== 'number') throw bad('ttlMs must be a number');
      const c = await issuer.createOperatorCertificate(str(body, 'name', 64), spki, ttlMs, by);
      return { ...c, certificate: c.certificate.toString('base64') };
    }
    default:
      throw new IssuerError('ERR_ISSUER_NOT_FOUND', `no admin route ${route}`);
  }
}

function readJson(req: IncomingMessage): Promise<Body> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    const tooLarge = () =>
      new IssuerError('ERR_ISSUER_BODY_TOO_LARGE', `admin body over ${ADMIN_MAX_BODY_BYTES} bytes`);
    if (declared > ADMIN_MAX_BODY_BYTES) {
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    // Past the limit: refused, the rest not read (the listener guard closes the connection once
    // the 413 is out; destroying the request here cut the connection before its answer).
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > ADMIN_MAX_BODY_BYTES) {
        req.off('data', onData);
        req.pause();
        chunks.length = 0;
        reject(tooLarge());
      } else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => {
      if (size === 0) return resolve({});
      try {
        const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
        resolve(v as Body);
      } catch {
        reject(bad('admin body must be a JSON object'));
      }
    });
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': bytes.length });
  res.end(bytes);
}

function handler(issuer: Issuer, logger: Logger, who: (req: IncomingMessage) => string) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://admin.invalid');
      try {
        const by = who(req);
        if (!url.pathname.startsWith(`${ADMIN_PREFIX}/`))
          throw new IssuerError('ERR_ISSUER_NOT_FOUND', `no admin route ${url.pathname.slice(0, 200)}`);
        const body = req.method === 'POST' ? await readJson(req) : {};
        send(res, 200, { result: await dispatch(issuer, req.method ?? 'GET', url, body, by) });
      } catch (err) {
        if (!isEdgewardError(err)) logger.error('admin request failed', { error: String(err) });
        const code = isEdgewardError(err) ? err.code : 'ERR_ISSUER_INTERNAL';
        if (code === 'ERR_ISSUER_ADMIN_FORBIDDEN')
          await issuer
            .refuse(
              code,
              { address: req.socket.remoteAddress ?? 'unknown' },
              `admin ${url.pathname.slice(0, 200)}`,
            )
            .catch(() => {});
        const message = isEdgewardError(err) ? err.message : 'internal error';
        if (!res.headersSent) send(res, statusFor(code), { error: { code, message } });
      }
    })();
  };
}

function bound(server: Server): void {
  server.requestTimeout = ADMIN_REQUEST_TIMEOUT_MS;
  server.headersTimeout = ADMIN_REQUEST_TIMEOUT_MS;
  server.maxHeadersCount = 50;
}

export interface AdminServer {
  /** The socket path, or `host:port` of the mTLS port. */
  readonly address: string;
  close(): Promise<void>;
}

function closer(server: Server, after?: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }).then(() => after?.());
    return closing;
  };
}

/** The admin socket at `path`: 0600, its directory created 0700 when missing; a stale socket file is replaced. */
export async function startAdminSocket(
  issuer: Issuer,
  o: { path: string; logger: Logger },
): Promise<AdminServer> {
  const dir = dirname(o.path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(o.path).catch(() => undefined);
  if (st !== undefined) {
    if (!st.isSocket())
      throw new IssuerError(
        'ERR_ISSUER_BAD_REQUEST',
        `${o.path} exists and is not a socket; not replacing it`,
      );
    await rm(o.path);
  }
  const server = createHttpServer(handler(issuer, o.logger, () => 'local-socket'));
  bound(server);
  // Listen, then restrict: the file is created with the umask's mode. Until chmod it may be
  // connectable by others the directory lets through, so the directory is checked first.
  const dirMode = (await lstat(dir)).mode & 0o077;
  if (dirMode & 0o002)
    throw new IssuerError('ERR_ISSUER_KEY_PERMISSIONS', `admin socket directory ${dir} is world-writable`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.path, () => resolve());
  });
  await chmod(o.path, 0o600);
  return { address: o.path, close: closer(server, () => rm(o.path, { force: true })) };
}

/** The optional mTLS admin port: operator certificates only. */
export async function startAdminTls(
  issuer: Issuer,
  o: {
    host: string;
    port: number;
    tls: TlsMaterial;
    logger: Logger;
    limits?: Partial<ListenerLimits>;
    clock?: Clock;
  },
): Promise<AdminServer> {
  const server = createHttpsServer(
    { cert: o.tls.cert, key: o.tls.key, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
    handler(issuer, o.logger, (req) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate?.(false);
      return issuer.authenticateOperator(peer?.raw);
    }),
  );
  bound(server);
  // The same bounds as the gateway front: handshake from accept, request (headers and body)
  // within its budget, at most 64 sockets; Node's timers of bound() stay as the backstop.
  guardHttpsListener(server, {
    limits: {
      handshakeTimeoutMs: 10_000,
      requestTimeoutMs: ADMIN_REQUEST_TIMEOUT_MS,
      maxConnections: 64,
      ...o.limits,
    },
    logger: o.logger,
    ...(o.clock === undefined ? {} : { clock: o.clock }),
    name: 'issuer-admin',
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address() as { port: number };
  return { address: `${o.host}:${addr.port}`, close: closer(server) };
}
