/** batchWrites: packets written in one event-loop turn leave in one write, in order, and end() flushes. */
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { batchWrites } from '../../transport/mqtt/write-batch.ts';

async function pair(): Promise<{ server: Socket; client: Socket; close(): void }> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  const accepted = once(srv, 'connection');
  const client = connect(port, '127.0.0.1');
  const [server] = (await accepted) as [Socket];
  return {
    server,
    client,
    close() {
      server.destroy();
      client.destroy();
      srv.close();
    },
  };
}

/** Write like mqtt-packet does: cork, write, uncork on the next tick; each packet in its own immediate. */
function writePackets(s: Socket, packets: string[]): Promise<void> {
  return new Promise((resolve) => {
    let left = packets.length;
    for (const p of packets)
      setImmediate(() => {
        s.cork();
        s.write(p);
        process.nextTick(() => {
          s.uncork();
          if (--left === 0) resolve();
        });
      });
  });
}

function countWrites(s: Socket): { calls: number } {
  const n = { calls: 0 };
  type Fn = (this: Socket, ...a: unknown[]) => unknown;
  const proto = Object.getPrototypeOf(s) as { _write: Fn; _writev: Fn };
  const w = proto._write;
  const wv = proto._writev;
  Object.assign(s, {
    _write(...a: unknown[]) {
      n.calls++;
      return w.apply(s, a);
    },
    _writev(...a: unknown[]) {
      n.calls++;
      return wv.apply(s, a);
    },
  });
  return n;
}

async function receive(c: Socket, bytes: number): Promise<string> {
  let got = '';
  for await (const chunk of c) {
    got += chunk;
    if (got.length >= bytes) break;
  }
  return got;
}

test('without batching each packet is its own write; with it, one write per turn, same bytes in order', async () => {
  const packets = ['p1;', 'p2;', 'p3;', 'p4;', 'p5;'];
  const plain = await pair();
  const n0 = countWrites(plain.server);
  const got0 = receive(plain.client, 15);
  await writePackets(plain.server, packets);
  assert.is(await got0, packets.join(''));
  assert.is(n0.calls, 5);
  plain.close();

  const batched = await pair();
  batchWrites(batched.server);
  const n1 = countWrites(batched.server);
  const got1 = receive(batched.client, 15);
  await writePackets(batched.server, packets);
  assert.is(await got1, packets.join(''));
  assert.is(n1.calls, 1, 'the five packets left together');
  batched.close();
});

test('end() sends what is still corked; destroy() before the flush is harmless', async () => {
  const a = await pair();
  batchWrites(a.server);
  const got = receive(a.client, 6);
  a.server.cork();
  a.server.write('bye!!!');
  a.server.uncork();
  a.server.end();
  assert.is(await got, 'bye!!!');
  a.close();

  const b = await pair();
  batchWrites(b.server);
  b.server.cork();
  b.server.write('lost');
  b.server.uncork();
  b.server.destroy();
  await new Promise((r) => setImmediate(r)); // the flush runs on a destroyed socket without throwing
  assert.ok(b.server.destroyed);
  b.close();
});

test.run();
