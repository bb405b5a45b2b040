/**
 * The agent's admin listeners as a local attacker uses them, with short injected bounds (headers
 * within 1 s, a request answered within 1.5 s, 6 connections): the metrics port is open to
 * every local user, the socket to the agent's. Sockets that never send a request, headers a byte
 * at a time, a request body that never completes, a flood of connections: each is closed within
 * its bound, connections stay at the cap, and a good client is answered throughout.
 */
import { mkdtempSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { adminRequest } from '../../../runtime/admin/client.ts';
import { type AdminServer, startAdmin } from '../../../runtime/admin/server.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';

const HEADERS_MS = 1000;
const REQUEST_MS = 1500;
const MAX = 6;
const socketPath = join(mkdtempSync(join(tmpdir(), 'ew-admin-abuse-')), 'admin.sock');
let admin: AdminServer;
/** Device ids the token handler was called for. */
const tokensMade: string[] = [];

test.before(async () => {
  admin = await startAdmin({
    socketPath,
    logger: new MemoryLogger(),
    metrics: { host: '127.0.0.1', port: 0 },
    bounds: { headersMs: HEADERS_MS, requestMs: REQUEST_MS, maxConnections: MAX },
    handlers: {
      status: () => ({ ok: true }),
      metrics: () => 'edgeward_up 1\n',
      createDeviceToken: async (req) => {
        tokensMade.push(req.id);
        return { token: `ewt1.x.${req.id}`, expiresAt: 0 };
      },
    },
  });
});
test.after(() => admin.close());

type Where = 'metrics port' | 'admin socket';
const WHERE: Where[] = ['metrics port', 'admin socket'];

function raw(where: Where): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s =
      where === 'admin socket'
        ? connect(socketPath, () => resolve(s))
        : connect(admin.metricsPort as number, '127.0.0.1', () => resolve(s));
    s.on('error', () => undefined);
    s.once('error', reject);
  });
}

/** Resolves once `s` closes; rejects past `ms` (the bound under test, with slack for a loaded machine). */
function closedWithin(s: Socket, ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve();
    const timer = setTimeout(() => reject(new Error(`${what}: still open after ${ms} ms`)), ms);
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function goodClient(): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${admin.metricsPort}/metrics`, {
    signal: AbortSignal.timeout(5000),
  });
  assert.is(res.status, 200);
  assert.is(await res.text(), 'edgeward_up 1\n');
  assert.equal(await adminRequest(socketPath, 'GET', '/v1/status'), { ok: true });
}

for (const where of WHERE) {
  test(`${where}: sockets that never send a request are closed within the headers bound`, async () => {
    const silent = await Promise.all(Array.from({ length: MAX / 2 }, () => raw(where)));
    await goodClient();
    for (const s of silent) await closedWithin(s, HEADERS_MS * 10, 'a silent socket');
  });

  test(`${where}: headers a byte at a time are cut at the headers bound although bytes keep coming`, async () => {
    const s = await raw(where);
    const head = `GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(400)}`;
    let i = 0;
    const drip = setInterval(() => {
      if (!s.destroyed && i < head.length) s.write(head[i++] as string);
    }, 10);
    let answered = '';
    s.on('data', (d: Buffer) => {
      answered += d.toString();
    });
    try {
      await closedWithin(s, HEADERS_MS * 10, 'a dripping socket');
    } finally {
      clearInterval(drip);
    }
    assert.ok(i < head.length, 'closed before the headers could complete');
    assert.is(answered, '');
  });
}

test('admin socket: a request body that never completes is cut at the request bound; the token is not made', async () => {
  const s = await raw('admin socket');
  s.write(
    'POST /v1/device-tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"id":',
  );
  await closedWithin(s, REQUEST_MS * 10, 'an unfinished body');
  await goodClient();
  assert.equal(tokensMade, []);
});

test('metrics port: a flood of connections stays at the cap (the oldest idle ones evicted) and a good client is answered', async () => {
  const flood = await Promise.all(Array.from({ length: MAX * 4 }, () => raw('metrics port')));
  // The server evicts at accept; its closes reach these sockets a moment later.
  const evicted = Promise.all(
    flood.slice(0, MAX * 3).map((s) => closedWithin(s, HEADERS_MS / 2, 'an evicted socket')),
  );
  await goodClient();
  await evicted;
  const open = flood.filter((s) => !s.destroyed).length;
  assert.ok(open <= MAX, `${open} flood sockets open, cap ${MAX}`);
  await Promise.all(flood.map((s) => closedWithin(s, HEADERS_MS * 10, 'a flood socket')));
});

test.run();
