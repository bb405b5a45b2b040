/**
 * The issuer's gateway front (and its admin mTLS port), started as the daemon starts them
 * (`startIssuer`), as an attacker on the network uses them, with short injected limits
 * (handshake and request budget 300 ms, 12 sockets): raw TCP that never starts TLS, a
 * ClientHello a byte at a time, headers a byte at a time after the handshake, an endless chunked
 * body, a Content-Length body that never completes, oversized bodies, a flood over the cap. Each
 * bad socket is closed within its bound (awaited on 'close'), the typed code is answered or
 * logged, memory stays bounded, and a good gateway still attests and renews.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AttestBeginResponse, IssuedIdentity } from '../../../runtime/upstream/protocol.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { closedWithin } from '../../helpers/sockets.ts';
import { type Harness, harness, keyAndCsr } from './harness.ts';

const LIMIT_MS = 300;
const MAX = 12;
/** Slack on a bound: timers and a loaded 2-core machine. */
const SLACK_MS = 1500;
const LIMITS = { handshakeTimeoutMs: LIMIT_MS, requestTimeoutMs: LIMIT_MS, maxConnections: MAX };

const sockDir = mkdtempSync(join(tmpdir(), 'listener-abuse-'));
let h: Harness;
let port: number;
let adminPort: number;
test.before(async () => {
  h = await harness(
    { joinToken: { enabled: true } },
    {
      rateLimit: { perAddress: 1000, perGateway: 1000, windowMs: 60_000 },
      listenerLimits: LIMITS,
      admin: { listen: { host: '127.0.0.1', port: 0 }, socket: join(sockDir, 'admin.sock') },
      adminLimits: LIMITS,
    },
  );
  port = Number(new URL(h.running.url).port);
  adminPort = Number(String(h.running.adminTls).split(':')[1]);
});
test.after(async () => {
  await h.running.close();
  rmSync(h.dir, { recursive: true, force: true });
  rmSync(sockDir, { recursive: true, force: true });
});

function tcp(p = port): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect(p, '127.0.0.1', () => resolve(s));
    s.on('error', () => undefined);
    s.once('error', reject);
  });
}

/** A completed handshake, no client certificate, nothing sent yet. */
function tls(p = port): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: p, rejectUnauthorized: false }, () => resolve(s));
    s.on('error', () => undefined);
    s.once('error', reject);
  });
}

/** Writes `bytes` one at a time every 20 ms until the socket closes. */
function trickle(s: Socket, bytes: Buffer): void {
  let i = 0;
  const timer = setInterval(() => {
    if (s.destroyed || !s.writable) return clearInterval(timer);
    s.write(bytes.subarray(i % bytes.length, (i % bytes.length) + 1));
    i++;
  }, 20);
  s.once('close', () => clearInterval(timer));
}

/** Everything the server sent on `s` until it closed. */
function received(s: Socket): Promise<string> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => s.once('close', () => resolve(Buffer.concat(chunks).toString('latin1'))));
}

const HEAD = (extra: string) =>
  `POST /v1/attest/begin HTTP/1.1\r\nhost: issuer\r\ncontent-type: application/cbor\r\n${extra}\r\n`;

/** Handshakes the guard of the listener on port `p` cut (timed out), from its debug log. */
function handshakesCut(p: () => number): number {
  const listener = p() === port ? 'issuer' : 'issuer-admin';
  return h.logger.lines.filter(
    (l) => l.msg === 'TLS handshake timed out: socket destroyed' && l.fields.listener === listener,
  ).length;
}

function timeoutsLogged(listener: string, phase: string): number {
  return h.logger.lines.filter(
    (l) =>
      l.fields.code === 'ERR_ISSUER_REQUEST_TIMEOUT' &&
      l.fields.listener === listener &&
      l.fields.phase === phase,
  ).length;
}

async function enrollAndRenew(name: string): Promise<void> {
  const token = await h.running.issuer.createJoinToken(name, 600_000);
  const b = await h.call('POST', '/v1/attest/begin', { method: 'join-token', token });
  assert.is(b.status, 200, b.text);
  const k = keyAndCsr();
  const fin = await h.call('POST', '/v1/attest/finish', {
    method: 'join-token',
    sessionId: (b.body as AttestBeginResponse).sessionId,
    csr: k.csr,
    caCsr: keyAndCsr().csr,
  });
  assert.is(fin.status, 200, fin.text);
  const id = fin.body as IssuedIdentity;
  const peer = { cert: id.svidChain[0] as Uint8Array, key: k.key };
  const rb = await h.call('POST', '/v1/renew/begin', {}, peer);
  assert.is(rb.status, 200, rb.text);
  const k2 = keyAndCsr();
  const rf = await h.call(
    'POST',
    '/v1/renew/finish',
    { sessionId: (rb.body as { sessionId: string }).sessionId, csr: k2.csr, caCsr: keyAndCsr().csr },
    peer,
  );
  assert.is(rf.status, 200, rf.text);
  const renewed = rf.body as IssuedIdentity;
  assert.is(renewed.spiffeId, id.spiffeId);
  assert.ok(new X509Certificate(Buffer.from(renewed.svidChain[0] as Uint8Array)).checkPrivateKey(k2.key));
}

for (const [name, p] of [
  ['gateway front', () => port],
  ['admin mTLS port', () => adminPort],
] as const) {
  test(`${name}: raw TCP that never starts TLS is closed within the handshake deadline`, async () => {
    const before = handshakesCut(p);
    const s = await tcp(p());
    const ms = await closedWithin(s, LIMIT_MS + SLACK_MS, 'silent TCP');
    assert.ok(ms >= LIMIT_MS - 50, `closed after ${ms} ms`);
    assert.is(handshakesCut(p), before + 1);
  });

  test(`${name}: a ClientHello a byte at a time is closed at the handshake deadline from accept`, async () => {
    const s = await tcp(p());
    // A TLS record header and the start of a ClientHello whose length it never reaches.
    const hello = Buffer.concat([Buffer.from('160301020001000200fc0303', 'hex'), Buffer.alloc(200, 0x41)]);
    const before = handshakesCut(p);
    trickle(s, hello);
    await closedWithin(s, LIMIT_MS + SLACK_MS, 'slow ClientHello');
    assert.is(handshakesCut(p), before + 1);
  });

  test(`${name}: headers a byte at a time after the handshake are cut at the request budget`, async () => {
    const before = timeoutsLogged(name === 'gateway front' ? 'issuer' : 'issuer-admin', 'headers');
    const s = await tls(p());
    trickle(
      s,
      Buffer.from(HEAD('content-length: 4\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n')),
    );
    await closedWithin(s, LIMIT_MS + SLACK_MS, 'slow headers');
    assert.is(timeoutsLogged(name === 'gateway front' ? 'issuer' : 'issuer-admin', 'headers'), before + 1);
  });
}

test('gateway front: a Content-Length body that never completes gets 408 ERR_ISSUER_REQUEST_TIMEOUT and is closed', async () => {
  const s = await tls();
  const answer = received(s);
  s.write(HEAD('content-length: 1000\r\n'));
  s.write(Buffer.alloc(10, 0xa0));
  await closedWithin(s, LIMIT_MS + SLACK_MS, 'stalled body');
  const text = await answer;
  assert.match(text, /^HTTP\/1\.1 408 /);
  assert.match(text, /ERR_ISSUER_REQUEST_TIMEOUT/);
});

test('admin mTLS port: a request without an operator certificate is refused before its body, and its connection closed unread', async () => {
  const s = await tls(adminPort);
  const answer = received(s);
  s.write('POST /v1/admin/gateways/budget HTTP/1.1\r\nhost: admin\r\ncontent-length: 1000\r\n\r\n');
  s.write(Buffer.alloc(10, 0x20));
  await closedWithin(s, LIMIT_MS + SLACK_MS, 'admin stalled body');
  const text = await answer;
  assert.match(text, /^HTTP\/1\.1 403 /);
  assert.match(text, /ERR_ISSUER_ADMIN_FORBIDDEN/);
});

test('an endless chunked body gets 408 ERR_ISSUER_REQUEST_TIMEOUT and is closed at the request budget', async () => {
  const before = timeoutsLogged('issuer', 'body');
  const s = await tls();
  const answer = received(s);
  s.write(HEAD('transfer-encoding: chunked\r\n'));
  const timer = setInterval(() => {
    if (s.writable) s.write('1\r\na\r\n');
  }, 20);
  try {
    await closedWithin(s, LIMIT_MS + SLACK_MS, 'endless chunked body');
  } finally {
    clearInterval(timer);
  }
  const text = await answer;
  assert.match(text, /^HTTP\/1\.1 408 /);
  assert.match(text, /ERR_ISSUER_REQUEST_TIMEOUT/);
  assert.is(timeoutsLogged('issuer', 'body'), before + 1);
});

test('a body streamed past the limit gets 413 ERR_ISSUER_BODY_TOO_LARGE, and the rest is not read', async () => {
  const s = await tls();
  const answer = received(s);
  s.write(HEAD('transfer-encoding: chunked\r\n'));
  const chunk = Buffer.concat([Buffer.from('4000\r\n'), Buffer.alloc(0x4000, 0x61), Buffer.from('\r\n')]);
  let sent = 0;
  // As fast as the socket takes it, for as long as it stays open.
  const pump = () => {
    while (s.writable && sent < 64 * 1024 * 1024) {
      sent += chunk.length;
      if (!s.write(chunk)) return void s.once('drain', pump);
    }
  };
  pump();
  await closedWithin(s, LIMIT_MS + SLACK_MS, 'oversized streamed body');
  const text = await answer;
  assert.match(text, /^HTTP\/1\.1 413 /);
  assert.ok(text.includes('ERR_ISSUER_BODY_TOO_LARGE'), text.slice(0, 200));
  // Closed soon after the limit (64 KiB), not after reading the 64 MiB offered.
  assert.ok(sent < 16 * 1024 * 1024, `${sent} bytes written before the close`);
});

test('a body declared over the limit gets 413 at once and its connection is closed unread', async () => {
  const s = await tls();
  const answer = received(s);
  s.write(HEAD('content-length: 10000000\r\n'));
  const timer = setInterval(() => {
    if (s.writable) s.write(Buffer.alloc(1024, 0x61));
  }, 10);
  try {
    await closedWithin(s, LIMIT_MS + SLACK_MS, 'declared oversized body');
  } finally {
    clearInterval(timer);
  }
  const text = await answer;
  assert.match(text, /^HTTP\/1\.1 413 /);
  assert.ok(text.includes('ERR_ISSUER_BODY_TOO_LARGE'));
});

test('admin socket: a body streamed past its 16 KiB limit is answered 413 ERR_ISSUER_BODY_TOO_LARGE (the connection was cut unanswered)', async () => {
  const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = httpRequest(
      {
        socketPath: h.running.adminSocket,
        method: 'POST',
        path: '/v1/admin/gateways/budget',
        headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.write(Buffer.alloc(20 * 1024, 0x20));
    req.end(Buffer.alloc(20 * 1024, 0x20));
  });
  assert.is(answer.status, 413);
  assert.match(answer.text, /ERR_ISSUER_BODY_TOO_LARGE/);
});

test('an idle keep-alive connection is closed at the request budget after its answer', async () => {
  const s = await tls();
  const answer = received(s);
  s.write('GET /v1/bundle HTTP/1.1\r\nhost: issuer\r\n\r\n');
  await closedWithin(s, LIMIT_MS + SLACK_MS, 'idle keep-alive');
  assert.match(await answer, /^HTTP\/1\.1 200 /);
});

test('a flood over the cap: sockets past it dropped, all closed within the bound, RSS bounded, a good gateway attests and renews', async () => {
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  const flood: Promise<number>[] = [];
  const sockets: Socket[] = [];
  for (let i = 0; i < 200; i++) {
    const s = tcpConnect(port, '127.0.0.1');
    s.on('error', () => undefined);
    sockets.push(s);
    flood.push(closedWithin(s, LIMIT_MS + 3 * SLACK_MS, `flood socket ${i}`));
  }
  const closed = await Promise.all(flood);
  assert.is(closed.length, 200);
  const full = h.logger.lines.filter((l) => l.msg === 'connection refused: listener full');
  assert.ok(full.length >= 1, 'the drop is logged');
  assert.is(full[0]?.fields.maxConnections, MAX);
  // The listener is usable at once after the flood: a gateway enrolls and renews.
  await enrollAndRenew('gw-after-flood');
  const grown = process.memoryUsage().rss - rss0;
  assert.ok(grown < 64 * 1024 * 1024, `RSS grew ${grown} bytes`);
});

test('while an attacker holds most of the cap in silent sockets, re-opened as each is cut, a gateway attests and renews; each is cut at the handshake deadline', async () => {
  let stop = false;
  const first: Promise<number>[] = [];
  const held = new Set<Socket>();
  const hold = (initial: boolean) => {
    if (stop) return;
    const s = tcpConnect(port, '127.0.0.1');
    s.on('error', () => undefined);
    held.add(s);
    if (initial) first.push(closedWithin(s, LIMIT_MS + SLACK_MS, 'held socket'));
    s.once('close', () => {
      held.delete(s);
      hold(false);
    });
  };
  for (let i = 0; i < MAX - 4; i++) hold(true);
  try {
    await enrollAndRenew('gw-under-flood');
    // The attacker's first sockets went at the deadline (and were replaced), not held for good.
    const closed = await Promise.all(first);
    assert.is(closed.length, MAX - 4);
  } finally {
    stop = true;
    for (const s of held) s.destroy();
  }
});

test('the listener timers run on the injected network clock: hour-long limits, the virtual hour passes, both sockets go at once', async () => {
  const net = new VirtualClock(Date.now());
  const HOUR = 3_600_000;
  const v = await harness(
    { joinToken: { enabled: true } },
    {
      listenerLimits: { handshakeTimeoutMs: HOUR, requestTimeoutMs: HOUR, maxConnections: MAX },
      networkClock: net,
    },
  );
  try {
    const vport = Number(new URL(v.running.url).port);
    const silent = await tcp(vport);
    const slow = await tls(vport);
    slow.write('POST /v1/attest/begin HTTP/1.1\r\nhost: iss');
    // The answer to a good request on the same listener: both sockets are accepted and armed by now.
    assert.is((await v.call('GET', '/v1/bundle')).status, 200);
    assert.ok(!silent.destroyed && !slow.destroyed);
    const closing = [
      closedWithin(silent, SLACK_MS, 'silent, after the virtual hour'),
      closedWithin(slow, SLACK_MS, 'slow headers, after the virtual hour'),
    ];
    await net.advance(HOUR);
    await Promise.all(closing);
  } finally {
    await v.running.close();
    rmSync(v.dir, { recursive: true, force: true });
  }
});

test.run();
