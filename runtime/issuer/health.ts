/**
 * The issuer's probes and metrics on a plain-HTTP listener of their own (default
 * 127.0.0.1:9101), apart from the mTLS front so a load balancer or Kubernetes can ask without a
 * certificate: `GET /healthz` (the process answers: 200 `ok`), `GET /readyz` (200 `ready`, or 503
 * with one reason per line: store, CA key, bundle, the composition root's checks, or `draining`),
 * `GET /metrics` (Prometheus text). Nothing else; bodies are ignored; 5 s per request.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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

function reply(
  res: import('node:http').ServerResponse,
  status: number,
  text: string,
  type = 'text/plain; charset=utf-8',
) {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

export async function startHealthServer(
  src: HealthSource,
  o: { host: string; port: number; logger: Logger },
): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://health.invalid').pathname;
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'method not allowed\n');
    (async () => {
      if (path === '/healthz') return reply(res, 200, 'ok\n');
      if (path === '/readyz') {
        const reasons = await src.readiness();
        return reasons.length === 0 ? reply(res, 200, 'ready\n') : reply(res, 503, `${reasons.join('\n')}\n`);
      }
      if (path === '/metrics')
        return reply(res, 200, await src.metrics(), 'text/plain; version=0.0.4; charset=utf-8');
      return reply(res, 404, 'not found\n');
    })().catch((err: unknown) => {
      o.logger.error('health request failed', { error: String(err) });
      if (!res.headersSent) reply(res, 500, 'internal error\n');
    });
  });
  server.requestTimeout = 5000;
  server.headersTimeout = 5000;
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
      });
      return closing;
    },
  };
}
