/**
 * Property-based fuzz of the MQTT front door (issue 15): raw CONNECT, PUBLISH and SUBSCRIBE
 * packets built by fast-check generators (valid-looking fields, hostile bytes: NUL, malformed
 * UTF-8, wildcards in names, 100+ levels, flag bits MQTT reserves, length fields that lie) sent to
 * a live broker over real mTLS sockets, one connection per case.
 *
 * Per case the property is: what the broker answers parses as MQTT (mqtt-packet), a refused
 * CONNECT is followed by the close, and the case ends (a PINGREQ sent after the packet is answered
 * or the connection closes: no hang). Across the run: the broker keeps serving (a canary round
 * trip every 50 cases and at the end), its RSS and event-loop delay stay bounded. Counts, RSS and
 * delay percentiles are printed. Seed and scale: EDGEWARD_FUZZ_SEED / EDGEWARD_FUZZ_RUNS.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FUZZ_SCALE, FUZZ_SEED } from '../../fuzz/helpers/fuzz.ts';
import type { Issued } from '../../helpers/pki.ts';
import { connectPacket, nextMessage, rawTls, rig } from '../setup.ts';

// A packet whose length field promises more than is sent stays open until the idle defence
// (maxIdleMs) closes it: short here, so such a case ends in 1 s.
const r = await rig({ limits: { maxConnections: 50, maxIdleMs: 1_000 } });
const dev: Issued = await r.pki.device('fz');
const canaryDev = await r.pki.device('canary');
const canary = await r.connect(canaryDev, { keepalive: 0 });
// The canary stays idle between round trips longer than maxIdleMs: it pings on its own schedule.
const keepCanary = setInterval(() => canary.publish('devices/canary/keep', '', { qos: 0 }), 300);
await canary.subscribeAsync('devices/canary/#', { qos: 1 });
const PINGREQ = Buffer.from([0xc0, 0x00]);
const CASE_MS = 5_000;
const TIME_LIMIT_MS = 90_000;

let cases = 0;
let canaries = 0;

/** MQTT Remaining Length encoding. */
function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}
const str = (b: Uint8Array): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
const packet = (first: number, body: Buffer, lie = 0): Buffer =>
  Buffer.concat([Buffer.from([first]), varint(Math.max(0, body.length + lie)), body]);

/** Topic-ish bytes: plausible names, wildcards, deep trees, NUL, malformed UTF-8, random bytes. */
const topicBytes = fc.oneof(
  fc
    .constantFrom(
      'devices/fz/t',
      'devices/fz/#',
      'devices/+/t',
      '#',
      '+',
      '$edgeward/bundle',
      '$edgeward/renew/fz',
      '$SYS/x',
      '',
      '/',
      'devices/fz/té😀',
    )
    .map((s) => Buffer.from(s)),
  fc
    .array(fc.constantFrom('a', '+', '#', '', '$x', 'fz', 'devices'), { maxLength: 130 })
    .map((l) => Buffer.from(l.join('/'))),
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
  fc
    .tuple(fc.constantFrom('devices/fz/'), fc.uint8Array({ minLength: 1, maxLength: 4 }))
    .map(([p, b]) => Buffer.concat([Buffer.from(p), b])),
);

const connectCase = fc.record({
  protocol: fc.oneof(
    fc.constant(Buffer.from('MQTT')),
    fc.uint8Array({ maxLength: 6 }).map((b) => Buffer.from(b)),
  ),
  level: fc.oneof(fc.constant(4), fc.integer({ min: 0, max: 255 })),
  flags: fc.integer({ min: 0, max: 255 }),
  keepalive: fc.integer({ min: 0, max: 65535 }),
  clientId: fc.oneof(
    fc.constant(Buffer.from('fz')),
    fc.uint8Array({ maxLength: 70 }).map((b) => Buffer.from(b)),
  ),
  willTopic: topicBytes,
  willPayload: fc.uint8Array({ maxLength: 32 }),
  user: fc.uint8Array({ maxLength: 8 }),
  lie: fc.oneof(fc.constant(0), fc.integer({ min: -4, max: 4 })),
});

type ConnectCase = typeof connectCase extends fc.Arbitrary<infer T> ? T : never;

function buildConnect(c: ConnectCase): Buffer {
  const parts: Buffer[] = [
    str(c.protocol),
    Buffer.from([c.level, c.flags, c.keepalive >> 8, c.keepalive & 0xff]),
    str(c.clientId),
  ];
  if (c.flags & 0x04) parts.push(str(c.willTopic), str(c.willPayload));
  if (c.flags & 0x80) parts.push(str(c.user));
  if (c.flags & 0x40) parts.push(str(c.user));
  return packet(0x10, Buffer.concat(parts), c.lie);
}

const publishCase = fc.record({
  topic: topicBytes,
  flags: fc.integer({ min: 0, max: 15 }), // dup, qos (3 = reserved), retain
  messageId: fc.integer({ min: 0, max: 65535 }),
  payload: fc.uint8Array({ maxLength: 256 }),
  lie: fc.oneof(fc.constant(0), fc.integer({ min: -3, max: 3 })),
});

const subscribeCase = fc.record({
  filters: fc.array(fc.tuple(topicBytes, fc.integer({ min: 0, max: 255 })), { minLength: 0, maxLength: 4 }),
  first: fc.constantFrom(0x82, 0x80, 0x83, 0xa2), // SUBSCRIBE, bad reserved bits, UNSUBSCRIBE
  messageId: fc.integer({ min: 0, max: 65535 }),
  lie: fc.oneof(fc.constant(0), fc.integer({ min: -3, max: 3 })),
});

/** Sends `bytes` then a PINGREQ; resolves with what came back once answered or closed. */
async function exchange(bytes: Buffer, connect: boolean): Promise<{ data: Buffer; closed: boolean }> {
  const s: TLSSocket = await rawTls(r.port, dev, r.pki.bundlePem);
  cases++;
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(watchdog);
      s.destroy();
      resolve({ data: Buffer.concat(parts), closed });
    };
    const watchdog = setTimeout(() => {
      done = true;
      s.destroy();
      reject(new Error(`hang: neither PINGRESP nor close within ${CASE_MS} ms for ${bytes.toString('hex')}`));
    }, CASE_MS);
    s.on('data', (d: Buffer) => {
      parts.push(d);
      const all = Buffer.concat(parts);
      // PINGRESP as the last two bytes: the broker processed everything before it.
      if (all.length >= 2 && all[all.length - 2] === 0xd0 && all[all.length - 1] === 0) finish(false);
    });
    s.once('close', () => finish(true));
    s.on('error', () => {});
    s.write(Buffer.concat([connect ? connectPacket('fz', true) : Buffer.alloc(0), bytes, PINGREQ]));
  });
}

/** Everything the broker sent parses as MQTT; returns the packets. */
function parseAll(data: Buffer): mqttPacket.Packet[] {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const out: mqttPacket.Packet[] = [];
  let error: Error | undefined;
  parser.on('packet', (p) => out.push(p));
  parser.on('error', (e) => {
    error = e;
  });
  parser.parse(data);
  assert.is(error, undefined, `broker output parses: ${data.toString('hex')}`);
  return out;
}

async function canaryRoundTrip(): Promise<void> {
  const got = nextMessage(canary, 'devices/canary/ping');
  await canary.publishAsync('devices/canary/ping', String(++canaries), { qos: 1 });
  assert.is((await got).toString(), String(canaries));
}

const rssStart = process.memoryUsage().rss;
let rssMax = rssStart;
const eld = monitorEventLoopDelay({ resolution: 10 });
eld.enable();
const started = Date.now();

async function run<T>(
  name: string,
  arb: fc.Arbitrary<T>,
  body: (v: T) => Promise<void>,
  numRuns: number,
): Promise<void> {
  const details = await fc.check(
    fc.asyncProperty(arb, async (v) => {
      await body(v);
      rssMax = Math.max(rssMax, process.memoryUsage().rss);
      if (cases % 50 === 0) await canaryRoundTrip();
    }),
    {
      seed: FUZZ_SEED,
      numRuns: Math.max(1, Math.round(numRuns * FUZZ_SCALE)),
      interruptAfterTimeLimit: TIME_LIMIT_MS,
      markInterruptAsFailure: false,
    },
  );
  if (details.failed) {
    assert.unreachable(`${name} (seed ${FUZZ_SEED}): ${fc.defaultReportMessage(details) ?? 'failed'}`);
  }
}

test('CONNECT: a refused CONNECT gets one CONNACK then the close; anything else parses', async () => {
  await run(
    'connect',
    connectCase,
    async (c) => {
      const { data, closed } = await exchange(buildConnect(c), false);
      const got = parseAll(data);
      const connack = got.find((p) => p.cmd === 'connack') as mqttPacket.IConnackPacket | undefined;
      if (connack !== undefined && connack.returnCode !== 0) {
        assert.ok(closed, 'closed after a refusal');
        assert.is(got.length, 1, 'nothing after a refusing CONNACK');
      }
      if (connack === undefined) assert.ok(closed, 'no CONNACK: closed');
    },
    150,
  );
});

test('PUBLISH after a valid CONNECT: delivered nowhere it may not go, never a hang', async () => {
  await run(
    'publish',
    publishCase,
    async (p) => {
      const id =
        (p.flags & 0x06) === 0 ? Buffer.alloc(0) : Buffer.from([p.messageId >> 8, p.messageId & 0xff]);
      const bytes = packet(0x30 | p.flags, Buffer.concat([str(p.topic), id, Buffer.from(p.payload)]), p.lie);
      const { data } = await exchange(bytes, true);
      for (const q of parseAll(data))
        assert.ok(['connack', 'puback', 'pubrec', 'pingresp'].includes(q.cmd), q.cmd);
    },
    150,
  );
});

test('SUBSCRIBE/UNSUBSCRIBE after a valid CONNECT: only granted filters are granted', async () => {
  await run(
    'subscribe',
    subscribeCase,
    async (s) => {
      const body = Buffer.concat([
        Buffer.from([s.messageId >> 8, s.messageId & 0xff]),
        ...s.filters.map(([f, q]) => (s.first === 0xa2 ? str(f) : Buffer.concat([str(f), Buffer.from([q])]))),
      ]);
      const { data } = await exchange(packet(s.first, body, s.lie), true);
      for (const q of parseAll(data)) {
        assert.ok(['connack', 'suback', 'unsuback', 'pingresp', 'publish'].includes(q.cmd), q.cmd);
        if (q.cmd === 'suback') {
          // Default policy: only devices/fz/… and the bundle may be granted.
          s.filters.forEach(([f], i) => {
            const granted = (q.granted as number[])[i];
            const t = f.toString();
            if (granted !== undefined && granted !== 128)
              assert.ok(
                t.startsWith('devices/fz/') ||
                  t === 'devices/fz' ||
                  t === '$edgeward/bundle' ||
                  t === '$edgeward/reply/fz',
                `granted ${JSON.stringify(t)}`,
              );
          });
        }
        if (q.cmd === 'publish')
          assert.ok(q.topic === '$edgeward/bundle' || q.topic.startsWith('devices/fz/'), q.topic);
      }
    },
    150,
  );
});

test('the broker kept serving; RSS and event-loop delay stayed bounded', async () => {
  await canaryRoundTrip();
  eld.disable();
  const rssEnd = process.memoryUsage().rss;
  const mb = (n: number) => Math.round(n / 1024 / 1024);
  const ms = (ns: number) => Math.round(ns / 1e6);
  console.log(
    `fuzz-mqtt: ${cases} cases in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${FUZZ_SEED}), ` +
      `${canaries} canary round trips; RSS ${mb(rssStart)} → ${mb(rssEnd)} MB (max ${mb(rssMax)}); ` +
      `event-loop delay p50 ${ms(eld.percentile(50))} ms, p99 ${ms(eld.percentile(99))} ms, max ${ms(eld.max)} ms; ` +
      `refusals ${JSON.stringify(r.broker.refusals())}`,
  );
  assert.ok(cases >= 3, 'cases ran');
  assert.ok(rssMax - rssStart < 150 * 1024 * 1024, `RSS grew by ${mb(rssMax - rssStart)} MB`);
  // Generous on a shared 2-core machine: a stall of seconds would mean a blocking parse.
  assert.ok(eld.percentile(99) < 500e6, `event-loop delay p99 ${ms(eld.percentile(99))} ms`);
  assert.ok(eld.max < 2_000e6, `event-loop delay max ${ms(eld.max)} ms`);
});

test.after(() => {
  clearInterval(keepCanary);
  return r.close();
});
test.run();
