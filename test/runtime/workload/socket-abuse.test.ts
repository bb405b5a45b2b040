/**
 * The Workload API socket is connectable by every local user, so it is tested as one of them
 * would misuse it: connections that never get to a call (no HTTP/2 preface, half a preface) are
 * closed by the agent after `firstCallMs`, and a flood of connections from one uid stops at
 * `maxConnectionsPerUid` (each is a file descriptor of the agent) while another user's workload
 * still gets its SVID, and one connection cannot open more than `maxStreamsPerConnection` calls.
 */
import { once } from 'node:events';
import http2 from 'node:http2';
import { connect, type Socket } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { harness } from './harness.ts';

const UID_A = 41011;
const entries = [{ name: 'adapter-a', selectors: [`unix:uid:${UID_A}`] }];

async function open(path: string): Promise<Socket> {
  const s = connect(path);
  await once(s, 'connect');
  return s;
}

/** Resolves when the server closed `s` (EOF or reset), with the bytes it sent before. */
async function closedByServer(s: Socket): Promise<number> {
  let bytes = 0;
  s.on('data', (d: Buffer) => {
    bytes += d.length;
  });
  s.on('error', () => {});
  await once(s, 'close');
  return bytes;
}

test('a connection that never finishes the HTTP/2 preface is closed after firstCallMs', async () => {
  const h = await harness(entries, { firstCallMs: 300 });
  try {
    const silent = await open(h.socket);
    const half = await open(h.socket);
    half.write('PRI * HTTP/2.0\r\n'); // the first half of the connection preface, never the rest
    const start = performance.now();
    await Promise.all([closedByServer(silent), closedByServer(half)]);
    const took = performance.now() - start;
    assert.ok(took >= 250 && took < 5000, `closed after ${Math.round(took)} ms`);
    // A real client on a fresh connection is unaffected.
    const a = h.client(['x509', '--max', '1'], { uid: UID_A });
    assert.equal(
      (await a.next()).svids?.map((s) => s.id),
      [`${h.pki.gateway.id}/workload/adapter-a`],
    );
  } finally {
    await h.close();
  }
});

test('a flood from one uid stops at maxConnectionsPerUid; another uid still gets its SVID', async () => {
  const h = await harness(entries, { maxConnectionsPerUid: 8, firstCallMs: 60_000 });
  const held: Socket[] = [];
  try {
    for (let i = 0; i < 8; i++) held.push(await open(h.socket));
    // The ninth from the same uid (this process's) is closed at once, before any byte is answered.
    const extra = await open(h.socket);
    assert.is(await closedByServer(extra), 0);
    const refused = h.logger.lines.filter((l) => l.fields.event === 'workload.refused');
    assert.is(refused.length, 1);
    assert.match(String(refused[0]?.fields.reason), /already holds 8 connections/);
    // The eight it holds stay open; another user's workload is served meanwhile.
    assert.ok(held.every((s) => !s.destroyed));
    const a = await h.client(['x509', '--max', '1'], { uid: UID_A }).next();
    assert.equal(
      a.svids?.map((s) => s.id),
      [`${h.pki.gateway.id}/workload/adapter-a`],
    );
  } finally {
    for (const s of held) s.destroy();
    await h.close();
  }
});

test('one connection opening 100 streams: at most maxStreamsPerConnection are served at once, the rest REFUSED_STREAM', async () => {
  const me = process.getuid?.() ?? 0;
  const h = await harness([{ name: 'me', selectors: [`unix:uid:${me}`] }], { maxStreamsPerConnection: 8 });
  const session = http2.connect('http://localhost', { createConnection: () => connect(h.socket) });
  session.on('error', () => {});
  let served = 0;
  let refused = 0;
  const events: (() => void)[] = [];
  const until = (ok: () => boolean): Promise<void> =>
    ok() ? Promise.resolve() : new Promise((resolve) => events.push(() => ok() && resolve()));
  const tick = (): void => {
    for (const e of events) e();
  };
  const call = (): http2.ClientHttp2Stream => {
    const req = session.request({
      ':method': 'POST',
      ':path': '/SpiffeWorkloadAPI/FetchX509SVID',
      'content-type': 'application/grpc',
      te: 'trailers',
      'workload.spiffe.io': 'true',
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (/REFUSED_STREAM/.test(err.message)) refused++;
      tick();
    });
    req.once('data', () => {
      served++;
      tick();
    });
    req.end(Buffer.alloc(5));
    return req;
  };
  try {
    Array.from({ length: 100 }, call);
    await until(() => served + refused === 100);
    assert.is(served, 8);
    assert.is(refused, 92);
    assert.ok(h.server.streamCount <= 8, `${h.server.streamCount} streams open`);
  } finally {
    session.destroy();
    await h.close();
  }
});

test.run();
