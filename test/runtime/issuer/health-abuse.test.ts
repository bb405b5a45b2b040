/**
 * The issuer's health listener (/healthz, /readyz, /metrics: no credentials) as an attacker who
 * can reach it uses it, with short injected limits (headers within 300 ms, 8 connections): sockets
 * that never send a request, headers sent a byte at a time, an endless request body, a flood of
 * connections. Each is closed within its bound, what the server takes stays bounded (connections
 * at the cap, bytes of an endless body, memory), and a good client's probes are answered
 * throughout.
 */
import { connect, type Socket } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { nullLogger } from '../../../runtime/core/logger.ts';
import { type HealthServer, startHealthServer } from '../../../runtime/issuer/health.ts';
import { closedWithin } from '../../helpers/sockets.ts';

const HEADERS_MS = 300;
const MAX = 8;
let health: HealthServer;
let port: number;

test.before(async () => {
  health = await startHealthServer(
    {
      readiness: async () => [],
      metrics: async () => 'edgeward_issuer_ready 1\n',
    },
    {
      host: '127.0.0.1',
      port: 0,
      logger: nullLogger,
      limits: { headersMs: HEADERS_MS, maxConnections: MAX },
    },
  );
  port = Number(new URL(health.url).port);
});
test.after(() => health.close());

/** A raw TCP connection to the listener, resolved once connected. */
function raw(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', () => undefined);
    s.once('error', reject);
  });
}

/** A good client: one GET on a fresh connection, its status and body. */
async function probe(path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`${health.url}${path}`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

async function probesAnswer(): Promise<void> {
  assert.equal(await probe('/healthz'), { status: 200, body: 'ok\n' });
  assert.equal(await probe('/readyz'), { status: 200, body: 'ready\n' });
  assert.is((await probe('/metrics')).status, 200);
}

test('sockets that never send a request are closed within the headers bound; probes answer meanwhile', async () => {
  const silent = await Promise.all(Array.from({ length: MAX / 2 }, raw));
  await probesAnswer();
  for (const s of silent) await closedWithin(s, HEADERS_MS * 10, 'a silent socket');
});

test('headers sent a byte at a time: closed at the headers bound although bytes keep coming, never answered', async () => {
  const s = await raw();
  let got = '';
  s.on('data', (d: Buffer) => {
    got += d.toString();
  });
  s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
  const drip = setInterval(() => s.write('X'), HEADERS_MS / 10);
  try {
    const ms = await closedWithin(s, HEADERS_MS * 10, 'slow headers');
    assert.ok(ms >= HEADERS_MS * 0.8, `closed after ${ms.toFixed(0)} ms`);
  } finally {
    clearInterval(drip);
  }
  assert.not.match(got, /200 OK/);
  await probesAnswer();
});

test('an idle keep-alive connection after an answer is closed at the headers bound too', async () => {
  const s = await raw();
  const answered = new Promise<void>((resolve) => {
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes('ok\n')) resolve();
    });
  });
  s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  await answered;
  const ms = await closedWithin(s, HEADERS_MS * 10, 'an idle keep-alive connection');
  assert.ok(ms >= HEADERS_MS * 0.8, `closed after ${ms.toFixed(0)} ms, not at its bound`);
});

test('an endless request body costs one answer: the connection is closed, the bytes taken are bounded', async () => {
  for (const head of [
    'POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
    'GET /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
  ]) {
    const s = await raw();
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
    });
    s.write(head);
    const chunk = Buffer.from(`4000\r\n${'a'.repeat(0x4000)}\r\n`);
    let sent = 0;
    const pump = () => {
      while (!s.destroyed && s.writable) {
        sent += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
    };
    pump();
    await closedWithin(s, HEADERS_MS * 20, 'an endless body');
    assert.match(got, /^HTTP\/1\.1 (405|200) /, got.slice(0, 80));
    assert.ok(sent < 256 * 1024 * 1024, `${sent} bytes sent before the close`);
  }
  await probesAnswer();
});

test('a flood of connections: at most the cap are kept, the oldest idle evicted, probes still answered, memory bounded', async () => {
  const rss0 = process.memoryUsage().rss;
  const flood: Socket[] = [];
  for (let round = 0; round < 5; round++) {
    flood.push(...(await Promise.all(Array.from({ length: 40 }, raw))));
    // A good client in the middle of the flood is served on a fresh connection.
    await probesAnswer();
  }
  // Every flooding socket ends closed within the headers bound of its accept, or evicted earlier.
  await Promise.all(flood.map((s) => closedWithin(s, HEADERS_MS * 10, 'a flooding socket')));
  const rss = process.memoryUsage().rss - rss0;
  assert.ok(rss < 64 * 1024 * 1024, `RSS grew by ${(rss / 1048576).toFixed(1)} MB`);
  await probesAnswer();
});

test('at the cap a new connection evicts the oldest idle one at once (not at its headers bound)', async () => {
  const first = await raw();
  const rest = await Promise.all(Array.from({ length: MAX - 1 }, raw));
  const t0 = performance.now();
  const extra = await raw();
  const ms = await closedWithin(first, HEADERS_MS * 10, 'the oldest idle socket');
  assert.ok(performance.now() - t0 < HEADERS_MS, `evicted after ${ms.toFixed(0)} ms, not at once`);
  assert.not.ok(extra.destroyed, 'the newest stays');
  for (const s of [...rest, extra]) s.destroy();
});

test.run();
