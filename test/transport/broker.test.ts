/** The mTLS broker with real TLS sockets and mqtt.js clients: identity, policy, refusals. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { BrokenKind } from '../helpers/pki.ts';
import { closed, collect, connectFailure, connectPacket, nextMessage, rawTls, rig } from './setup.ts';

const r = await rig();

test('a device publishes and receives under its own subtree', async () => {
  const dev = await r.pki.device('sensor-1');
  const c = await r.connect(dev);
  const granted = await c.subscribeAsync('devices/sensor-1/#', { qos: 1 });
  assert.is(granted[0]?.qos, 1);
  const got = nextMessage(c, 'devices/sensor-1/temp');
  await c.publishAsync('devices/sensor-1/temp', '21.5', { qos: 1 });
  assert.is((await got).toString(), '21.5');
  await c.endAsync();
});

test("subscribing to another device's topic gets SUBACK 0x80", async () => {
  const dev = await r.pki.device('sensor-2');
  const c = await r.connect(dev);
  const suback = new Promise<number[]>((resolve) =>
    c.on('packetreceive', (p) => {
      if (p.cmd === 'suback') resolve(p.granted as number[]);
    }),
  );
  c.subscribe(['devices/sensor-1/#', 'devices/+/temp', '#', 'devices/sensor-2/a'], { qos: 1 }, () => {});
  assert.equal(await suback, [128, 128, 128, 1]);
  assert.is(r.broker.refusals().ERR_MQTT_SUBSCRIBE_DENIED, 3);
  await c.endAsync();
});

test("publishing to another device's topic, a reserved topic, or retained outside the grant disconnects", async () => {
  const dev = await r.pki.device('sensor-3');
  for (const [topic, retain, code] of [
    ['devices/sensor-1/temp', false, 'ERR_MQTT_PUBLISH_DENIED'],
    ['$edgeward/bundle', false, 'ERR_MQTT_RESERVED_TOPIC'],
    ['$edgeward/renew/sensor-1', false, 'ERR_MQTT_RESERVED_TOPIC'],
    ['$edgeward/renew/sensor-3', true, 'ERR_MQTT_RESERVED_TOPIC'],
    ['elsewhere', false, 'ERR_MQTT_PUBLISH_DENIED'],
  ] as const) {
    const c = await r.connect(dev);
    const gone = closed(c);
    const before = r.broker.refusals()[code] ?? 0;
    c.publish(topic, 'x', { qos: 1, retain });
    await gone;
    assert.is(r.broker.refusals()[code], before + 1, topic);
  }
});

test('the client id must be the device id; empty id with a persistent session is refused', async () => {
  const dev = await r.pki.device('sensor-4');
  assert.is(await connectFailure(r.port, dev, r.pki.bundlePem, { clientId: 'someone-else' }), 2);
  // mqtt.js refuses to send this itself: a hand-built CONNECT [MQTT-3.1.3-8].
  const s = await rawTls(r.port, dev, r.pki.bundlePem);
  const reply = collect(s);
  s.write(connectPacket('', false));
  const { data, closed: gone } = await reply;
  assert.equal([...data], [0x20, 2, 0, 2], 'CONNACK 2');
  assert.ok(gone);
  assert.is(r.broker.refusals().ERR_MQTT_CLIENT_ID_REJECTED, 2);
});

test('keepalive 0 ("off", MQTT 3.1.1 §3.1.2.10) is accepted', async () => {
  const dev = await r.pki.device('sensor-ka0');
  const c = await r.connect(dev, { keepalive: 0 });
  const got = new Promise<string>((resolve) => c.once('message', (t, p) => resolve(`${t} ${p}`)));
  await c.subscribeAsync('devices/sensor-ka0/#', { qos: 1 });
  await c.publishAsync('devices/sensor-ka0/x', 'y', { qos: 1 });
  assert.is(await got, 'devices/sensor-ka0/x y', 'served with keepalive 0');
  await c.endAsync();
});

const refusedKinds: [BrokenKind, string][] = [
  ['ca-true', 'ERR_SVID_INVALID'],
  ['two-uris', 'ERR_SVID_INVALID'],
  ['no-uri', 'ERR_SVID_INVALID'],
  ['wrong-ca', 'ERR_SVID_UNTRUSTED'],
  ['expired', 'ERR_SVID_EXPIRED'],
  ['other-gateway-path', 'ERR_SVID_PATH_SCOPE'],
  ['no-key-usage', 'ERR_SVID_INVALID'],
  ['server-only-eku', 'ERR_SVID_INVALID'],
];
for (const [kind, code] of refusedKinds) {
  test(`a client certificate that is ${kind} is refused with ${code} logged`, async () => {
    const bad = await r.pki.broken(kind);
    const before = r.logger.lines.length;
    const got = await connectFailure(r.port, bad, r.pki.bundlePem);
    assert.not.equal(got, 'connected');
    const line = r.logger.lines.slice(before).find((l) => l.msg === 'client certificate refused');
    assert.ok(line, 'refusal logged');
    assert.is(line?.fields.code, code);
  });
}

test('a device of another gateway (valid, path-scoped) has no policy rule here: CONNACK 5', async () => {
  const other = await r.pki.device('x', { ca: r.pki.otherCa });
  assert.is(await connectFailure(r.port, other, r.pki.bundlePem, { clientId: 'x' }), 5);
  assert.is(r.broker.refusals().ERR_MQTT_NO_POLICY_RULE, 1);
});

test('no client certificate: refused with ERR_SVID_INVALID logged', async () => {
  const before = r.logger.lines.length;
  const got = await new Promise((resolve) => {
    import('mqtt').then(({ default: mqtt }) => {
      const c = mqtt.connect(`mqtts://127.0.0.1:${r.port}`, {
        ca: r.pki.bundlePem,
        reconnectPeriod: 0,
        clientId: 'anon',
      });
      c.once('connect', () => resolve('connected'));
      c.once('close', () => {
        c.end(true);
        resolve('closed');
      });
    }, resolve);
  });
  assert.is(got, 'closed');
  const line = r.logger.lines.slice(before).find((l) => l.msg === 'client certificate refused');
  assert.is(line?.fields.code, 'ERR_SVID_INVALID');
});

test('the broker kept serving everyone else', async () => {
  const dev = await r.pki.device('sensor-1');
  const c = await r.connect(dev);
  assert.ok(c.connected);
  await c.endAsync();
});

test.after(() => r.close());
test.run();
