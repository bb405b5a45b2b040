/**
 * transport/net/http-bounds.ts on a real `node:http` listener with a virtual clock (the bounds'
 * timers run on it; the sockets are real): at the connection cap with every connection busy a new
 * one is closed and the busy ones are answered; a request its handler never answers is cut at
 * `requestMs`, not before; an answered connection is given `headersMs` again (keep-alive).
 */
import { createServer, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { VirtualClock } from '../../sim/clock/virtual-clock.ts';
import { boundHttpServer } from '../../transport/net/http-bounds.ts';

const HEADERS_MS = 1000;
const REQUEST_MS = 5000;

async function listener(maxConnections: number) {
  const clock = new VirtualClock();
  /** Requests to /hang wait here until answered by the test. */
  const hanging: ServerResponse[] = [];
  const arrived: (() => void)[] = [];
  const server = createServer((req, res) => {
    if (req.url === '/hang') {
      hanging.push(res);
      arrived.shift()?.();
      return;
    }
    res.end('ok');
  });
  const bounds = boundHttpServer(server, {
    headersMs: HEADERS_MS,
    requestMs: REQUEST_MS,
    maxConnections,
    clock,
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const open = () =>
    new Promise<Socket>((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(s));
      s.on('error', () => undefined);
      s.once('error', reject);
    });
  /** Sends GET `path` on `s`; resolves once the handler holds it (for /hang). */
  const hang = (s: Socket) =>
    new Promise<void>((r) => {
      arrived.push(r);
      s.write('GET /hang HTTP/1.1\r\nHost: x\r\n\r\n');
    });
  const closed = (s: Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));
  const close = async () => {
    bounds.closeAll();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return { clock, server, bounds, hanging, open, hang, closed, close };
}

test('at the cap with every connection busy, a new connection is closed and the busy ones are answered', async () => {
  const l = await listener(2);
  try {
    const busy = [await l.open(), await l.open()];
    for (const s of busy) await l.hang(s);
    const extra = await l.open();
    await l.closed(extra);
    assert.is(l.bounds.open(), 2);
    const answers = busy.map(
      (s) => new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString()))),
    );
    for (const res of l.hanging) res.end('late');
    for (const a of await Promise.all(answers)) assert.match(a, /^HTTP\/1\.1 200 [\s\S]*late$/);
  } finally {
    await l.close();
  }
});

test('a request its handler never answers is cut at requestMs, not before; headersMs does not apply to it', async () => {
  const l = await listener(4);
  try {
    const s = await l.open();
    await l.hang(s);
    await l.clock.advance(REQUEST_MS - 1);
    assert.not.ok(s.destroyed, 'open before requestMs (past headersMs)');
    assert.is(l.bounds.open(), 1);
    await l.clock.advance(1);
    await l.closed(s);
  } finally {
    await l.close();
  }
});

test('an answered keep-alive connection gets headersMs again, then is closed', async () => {
  const l = await listener(4);
  try {
    const s = await l.open();
    const answered = new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(await answered, /ok$/);
    await l.clock.advance(HEADERS_MS - 1);
    assert.not.ok(s.destroyed);
    await l.clock.advance(1);
    await l.closed(s);
    assert.is(l.bounds.open(), 0);
  } finally {
    await l.close();
  }
});

test.run();
