/**
 * The issuer's probes and metrics on a plain-HTTP listener of their own (default
 * 127.0.0.1:9101), apart from the mTLS front so a load balancer or Kubernetes can ask without a
 * certificate: `GET /healthz` (the process answers: 200 `ok`), `GET /readyz` (200 `ready`, or 503
 * with one reason per line: store, CA key, bundle, the composition root's checks, or `draining`),
 * `GET /metrics` (Prometheus text). Nothing else.
 *
 * It needs no credentials, so it is bounded against whoever can reach it
 * (`transport/net/http-bounds.ts`): a connection must complete a request's headers within
 * `headersMs` (5 s) of its accept or of its last answer, or it is closed (silent sockets, headers
 * a byte at a time, an idle keep-alive); a request body is never waited for (the connection of a
 * request whose body has not ended by its answer is closed: an endless body costs one answer); at
 * most `maxConnections` (32) are open, and one more evicts the oldest connection that has no
 * request in progress, so a flood of idle sockets cannot lock out a prober; concurrent /readyz
 * and /metrics share one readiness run (one store read, not one per request).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { boundHttpServer } from '../../transport/net/http-bounds.ts';
import { type Clock, systemClock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';

export interface HealthSource {
  /** Reasons this replica is not ready; empty when ready. */
  readiness(): Promise<string[]>;
  metrics(): Promise<string>;
}

export interface HealthServer {
  readonly url: string;
  close(): Promise<void>;
}

export interface HealthLimits {
  /** From accept, or from the last answer on the connection, to a request's complete headers (default 5000). */
  readonly headersMs?: number;
  /** Open connections at most (default 32). */
  readonly maxConnections?: number;
}

function reply(res: ServerResponse, status: number, text: string, type = 'text/plain; charset=utf-8') {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** One run of `fn` shared by the calls made while it runs. */
function shared<T>(fn: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined;
  return () => {
    running ??= fn().finally(() => {
      running = undefined;
    });
    return running;
  };
}

export async function startHealthServer(
  src: HealthSource,
  o: { host: string; port: number; logger: Logger; clock?: Clock; limits?: HealthLimits },
): Promise<HealthServer> {
  const clock = o.clock ?? systemClock;
  const headersMs = o.limits?.headersMs ?? 5000;
  const max = o.limits?.maxConnections ?? 32;
  const readiness = shared(() => src.readiness());
  const metrics = shared(() => src.metrics());

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://health.invalid').pathname;
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'method not allowed\n');
    (async () => {
      if (path === '/healthz') return reply(res, 200, 'ok\n');
      if (path === '/readyz') {
        const reasons = await readiness();
        return reasons.length === 0 ? reply(res, 200, 'ready\n') : reply(res, 503, `${reasons.join('\n')}\n`);
      }
      if (path === '/metrics')
        return reply(res, 200, await metrics(), 'text/plain; version=0.0.4; charset=utf-8');
      return reply(res, 404, 'not found\n');
    })().catch((err: unknown) => {
      o.logger.error('health request failed', { error: String(err) });
      if (!res.headersSent) reply(res, 500, 'internal error\n');
    });
  };

  const server: Server = createServer(handle);
  const bounds = boundHttpServer(server, { headersMs, maxConnections: max, clock });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        bounds.closeAll();
      });
      return closing;
    },
  };
}
