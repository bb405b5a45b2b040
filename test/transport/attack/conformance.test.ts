/**
 * MQTT 3.1.1 conformance clauses the broker got wrong (issue 15 items 11, 13, 14, 15), each
 * checked with a real client (mqtt.js, reading the packets it receives) or hand-built packets.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_POLICY } from '../../../transport/policy/default.ts';
import { closed, collect, connectPacket, rawTls, rig } from '../setup.ts';

const r = await rig({
  policy: {
    version: 1,
    rules: [
      ...DEFAULT_POLICY.rules,
      {
        match: '{self}/device/sink',
        publish: ['sink/state'],
        retain: ['sink/state'],
        subscribe: ['#', '+/+', 'devices/#', '$edgeward/bundle'],
      },
    ],
  },
});
const s1 = await r.connect(await r.pki.device('s1'));
await s1.publishAsync('devices/s1/state', 'warm', { qos: 1, retain: true });

type Got = { topic: string; qos: number; retain: boolean };
async function sink(): Promise<{ c: Awaited<ReturnType<typeof r.connect>>; got: Got[] }> {
  const c = await r.connect(await r.pki.device('sink'));
  const got: Got[] = [];
  c.on('message', (topic, _p, packet) => got.push({ topic, qos: packet.qos, retain: packet.retain }));
  return { c, got };
}

/** Resolves once `got` holds a message on `topic`. */
function arrival(c: Awaited<ReturnType<typeof r.connect>>, topic: string): Promise<void> {
  return new Promise((resolve) =>
    c.on('message', (t) => {
      if (t === topic) resolve();
    }),
  );
}

test('[MQTT-4.7.2-1] retained $edgeward/bundle is not sent to a # subscriber', async () => {
  const { c, got } = await sink();
  const state = arrival(c, 'devices/s1/state');
  await c.subscribeAsync('#', { qos: 1 });
  await state;
  // Sentinel: a live message after the retained ones were sent.
  const live = arrival(c, 'devices/s1/sentinel');
  await s1.publishAsync('devices/s1/sentinel', 'x', { qos: 1 });
  await live;
  assert.not.ok(
    got.some((g) => g.topic.startsWith('$')),
    `no $ topic via #: ${JSON.stringify(got)}`,
  );
  await c.endAsync();
});

test('[MQTT-4.7.2-1] retained $edgeward/bundle is not sent to a +/+ subscriber; an exact subscription gets it', async () => {
  const { c, got } = await sink();
  await c.publishAsync('sink/state', 'on', { qos: 1, retain: true });
  const own = arrival(c, 'sink/state');
  await c.subscribeAsync('+/+', { qos: 1 });
  await own;
  const bundle = arrival(c, '$edgeward/bundle');
  await c.subscribeAsync('$edgeward/bundle', { qos: 1 });
  await bundle; // the sentinel: sent after +/+'s retained messages
  assert.equal(
    got.map((g) => g.topic),
    ['sink/state', '$edgeward/bundle'],
  );
  await c.publishAsync('sink/state', '', { qos: 1, retain: true });
  await c.endAsync();
});

test('[MQTT-3.8.4-6] a retained QoS 1 message on a QoS 0 wildcard subscription arrives at QoS 0', async () => {
  const { c, got } = await sink();
  const state = arrival(c, 'devices/s1/state');
  const granted = await c.subscribeAsync('devices/+/state', { qos: 0 });
  assert.is(granted[0]?.qos, 0);
  await state;
  assert.equal(got[0], { topic: 'devices/s1/state', qos: 0, retain: true });
  // The same at QoS 1 keeps QoS 1 (the control).
  const again = arrival(c, 'devices/s1/state');
  await c.subscribeAsync('devices/s1/#', { qos: 1 });
  await again;
  assert.equal(got[1], { topic: 'devices/s1/state', qos: 1, retain: true });
  await c.endAsync();
});

/** A PUBLISH (QoS 0) with the topic given as raw bytes. */
function publishRaw(topic: Buffer, payload = Buffer.from('x')): Buffer {
  const body = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic, payload]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}
function subscribeRaw(filter: Buffer): Buffer {
  const body = Buffer.concat([
    Buffer.from([0, 1, filter.length >> 8, filter.length & 0xff]),
    filter,
    Buffer.from([0]),
  ]);
  return Buffer.concat([Buffer.from([0x82, body.length]), body]);
}

for (const [name, bytes] of [
  ['PUBLISH topic with U+0000', publishRaw(Buffer.from('devices/raw/a\u0000b'))],
  ['PUBLISH topic with invalid UTF-8', publishRaw(Buffer.from([...Buffer.from('devices/raw/'), 0xc3, 0x28]))],
  [
    'PUBLISH topic with a UTF-16 surrogate encoded in UTF-8',
    publishRaw(Buffer.from([...Buffer.from('devices/raw/'), 0xed, 0xa0, 0x80])),
  ],
  ['SUBSCRIBE filter with invalid UTF-8', subscribeRaw(Buffer.from([...Buffer.from('devices/raw/'), 0xff]))],
] as const) {
  test(`[MQTT-1.5.3-1/2] ${name} closes the connection (ERR_MQTT_UTF8_INVALID)`, async () => {
    const before = r.broker.refusals().ERR_MQTT_UTF8_INVALID ?? 0;
    const s = await rawTls(r.port, await r.pki.device('raw'), r.pki.bundlePem);
    const connack = new Promise<Buffer>((resolve) => s.once('data', resolve));
    s.write(connectPacket('raw', true));
    assert.equal([...(await connack)], [0x20, 2, 0, 0], 'CONNACK 0');
    const reply = collect(s);
    s.write(bytes);
    const { data, closed: gone } = await reply;
    assert.ok(gone, 'closed');
    assert.is(data.length, 0, 'nothing after the CONNACK');
    assert.is(r.broker.refusals().ERR_MQTT_UTF8_INVALID, before + 1);
  });
}

test('a CONNECT whose client id is not UTF-8 is closed before CONNACK', async () => {
  const s = await rawTls(r.port, await r.pki.device('raw'), r.pki.bundlePem);
  const reply = collect(s);
  const good = connectPacket('raw', true);
  const bad = Buffer.from(good);
  bad[bad.length - 1] = 0xff; // the client id's last byte
  s.write(bad);
  const { data, closed: gone } = await reply;
  assert.ok(gone);
  assert.is(data.length, 0);
});

test('well-formed multi-byte UTF-8 topics pass (the control)', async () => {
  const topic = 'devices/s1/température/😀';
  const got = new Promise<string>((resolve) =>
    s1.on('message', (t, p) => {
      if (t === topic) resolve(`${t} ${p}`);
    }),
  );
  await s1.subscribeAsync('devices/s1/#', { qos: 1 });
  await s1.publishAsync('devices/s1/température/😀', 'ok', { qos: 1 });
  assert.is(await got, 'devices/s1/température/😀 ok');
  assert.ok(s1.connected, 'the connection stays open');
});

test('keepalive 0 is accepted, and an idle connection is closed after maxIdleMs anyway (ERR_MQTT_IDLE_TIMEOUT)', async () => {
  const idle = await rig({ limits: { maxIdleMs: 300 } });
  try {
    const c = await idle.connect(await idle.pki.device('quiet'), { keepalive: 0 });
    await c.publishAsync('devices/quiet/x', 'served', { qos: 1 });
    await closed(c);
    assert.is(idle.broker.refusals().ERR_MQTT_IDLE_TIMEOUT, 1);
  } finally {
    await idle.close();
  }
});

test.after(() => r.close());
test.run();
