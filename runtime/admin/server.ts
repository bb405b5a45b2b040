/**
 * The agent's local admin endpoint: HTTP/1.1 over a Unix socket with mode 0600 (only the agent's
 * user can talk to it), and optionally `/metrics` on a loopback TCP port for Prometheus.
 *
 * Routes on the socket:
 * - `GET /v1/status` → the status JSON (`edgeward status`);
 * - `GET /metrics` → Prometheus text;
 * - `POST /v1/device-tokens` with JSON `{id, ttlMs}` → `{token, expiresAt}` (the transport's
 *   `edgeward device token create` calls it), when the composition root provides the handler.
 * Errors answer `{error: {code, message}}`. A stale socket left by a killed agent is replaced; a
 * live one (another agent running) is refused. Both listeners are bounded (ADMIN_BOUNDS:
 * `transport/net/http-bounds.ts`): the metrics port is open to every local user.
 *
 * @example
 * ```ts
 * const admin = await startAdmin({ socketPath: '.edgeward/admin.sock', handlers, logger });
 * await admin.close();
 * ```
 */
import { chmod, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, isIPv4, isIPv6 } from 'node:net';
import { boundHttpServer, type HttpBoundsOptions } from '../../transport/net/http-bounds.ts';
import { isEdgewardError } from '../core/error.ts';
import type { Logger } from '../core/logger.ts';
import { AgentError } from '../errors.ts';

const MAX_REQUEST_BYTES = 4096;

export interface AdminHandlers {
  status(): unknown;
  metrics(): string;
  createDeviceToken?(req: { id: string; ttlMs: number }): Promise<{ token: string; expiresAt: number }>;
}

export interface AdminServer {
  readonly socketPath: string;
  /** The metrics listener's port, when one was asked for. */
  readonly metricsPort: number | undefined;
  close(): Promise<void>;
}

export interface AdminOptions {
  readonly socketPath: string;
  readonly handlers: AdminHandlers;
  readonly logger: Logger;
  /** Serve `/metrics` on this loopback address too (port 0 = any free port). */
  readonly metrics?: { host: string; port: number };
  /** Bounds of both listeners (default ADMIN_BOUNDS); tests shorten them. */
  readonly bounds?: Partial<HttpBoundsOptions>;
}

/**
 * The socket is the agent user's only, but the metrics port is open to every local user (and
 * shares the agent's descriptors with the broker): each listener completes a request's headers
 * within 5 s of accept or of its last answer, answers a request (its body read) within 10 s, and
 * holds at most 32 connections, a new one evicting the oldest idle one.
 */
export const ADMIN_BOUNDS: HttpBoundsOptions = { headersMs: 5000, requestMs: 10_000, maxConnections: 32 };

export async function startAdmin(o: AdminOptions): Promise<AdminServer> {
  if (o.metrics !== undefined) {
    const host = o.metrics.host;
    if (
      !(host === 'localhost' || (isIPv4(host) && host.startsWith('127.')) || (isIPv6(host) && host === '::1'))
    )
      throw new AgentError('ERR_ADMIN_REQUEST', `metrics must listen on a loopback address, not ${host}`);
  }
  await clearStaleSocket(o.socketPath);
  const limits = { ...ADMIN_BOUNDS, ...o.bounds };
  const admin = createServer((req, res) => void route(req, res, o.handlers, o.logger));
  const bounded = [boundHttpServer(admin, limits)];
  await listen(admin, o.socketPath);
  await chmod(o.socketPath, 0o600);
  let metricsServer: Server | undefined;
  if (o.metrics !== undefined) {
    const m = createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/metrics') return text(res, 200, o.handlers.metrics());
      return json(res, 404, { error: { code: 'ERR_ADMIN_REQUEST', message: 'only GET /metrics here' } });
    });
    bounded.push(boundHttpServer(m, limits));
    try {
      await listen(m, o.metrics.port, o.metrics.host);
    } catch (err) {
      await close(admin);
      await unlink(o.socketPath).catch(() => {});
      throw err;
    }
    metricsServer = m;
  }
  let closed = false;
  return {
    socketPath: o.socketPath,
    metricsPort: metricsServer === undefined ? undefined : (metricsServer.address() as AddressInfo).port,
    async close() {
      if (closed) return;
      closed = true;
      const closing = Promise.all([close(admin), metricsServer && close(metricsServer)]);
      for (const b of bounded) b.closeAll();
      await closing;
      await unlink(o.socketPath).catch(() => {});
    },
  };
}

async function route(
  req: IncomingMessage,
  res: ServerResponse,
  h: AdminHandlers,
  logger: Logger,
): Promise<void> {
  try {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && path === '/v1/status') return json(res, 200, h.status());
    if (req.method === 'GET' && path === '/metrics') return text(res, 200, h.metrics());
    if (req.method === 'POST' && path === '/v1/device-tokens') {
      if (h.createDeviceToken === undefined)
        return json(res, 404, { error: { code: 'ERR_ADMIN_REQUEST', message: 'this agent runs no broker' } });
      const body = await readJson(req);
      const id = body?.id;
      const ttlMs = body?.ttlMs;
      if (typeof id !== 'string' || typeof ttlMs !== 'number' || !Number.isInteger(ttlMs) || ttlMs <= 0)
        throw new AgentError(
          'ERR_ADMIN_REQUEST',
          'body must be JSON {"id": string, "ttlMs": positive integer}',
        );
      const out = await h.createDeviceToken({ id, ttlMs });
      logger.info('device join token created', {
        event: 'device.token',
        deviceId: id,
        expiresAt: out.expiresAt,
      });
      return json(res, 201, out);
    }
    return json(res, 404, {
      error: { code: 'ERR_ADMIN_REQUEST', message: `no route ${req.method} ${path}` },
    });
  } catch (err) {
    const code = isEdgewardError(err)
      ? err.code
      : err instanceof TypeError
        ? 'ERR_ADMIN_REQUEST'
        : 'ERR_UNKNOWN';
    const status = code === 'ERR_UNKNOWN' ? 500 : 400;
    if (status === 500) logger.error('admin request failed', { event: 'admin.error', err: String(err) });
    return json(res, status, { error: { code, message: (err as Error).message } });
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_REQUEST_BYTES) throw new AgentError('ERR_ADMIN_REQUEST', 'request body too large');
    chunks.push(c as Buffer);
  }
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    throw new AgentError('ERR_ADMIN_REQUEST', 'request body is not JSON');
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    'content-type': 'text/plain; version=0.0.4',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

function listen(server: Server, at: string | number, host?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err) =>
      reject(new AgentError('ERR_ADMIN_REQUEST', `cannot listen on ${host ?? ''}${at}: ${err.message}`)),
    );
    if (typeof at === 'string') server.listen(at, resolve);
    else server.listen(at, host, resolve);
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Remove a socket file nobody answers on; refuse when an agent is still listening there. */
async function clearStaleSocket(path: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (alive) throw new AgentError('ERR_ADMIN_REQUEST', `another agent is already listening on ${path}`);
  await unlink(path).catch(() => {});
}
