/**
 * Wills under attack (issue 15 item 1 and 2): a will is checked against its owner's grants at
 * CONNECT and again whenever it is published — including the wills aedes replays from the
 * durable journal after a kill -9 (a real child process, killed with SIGKILL and restarted on the
 * same journal). Reserved topics are never a will's; a will without a known owner, or with a
 * topic the broker would choke on, is dropped with a typed code and the broker keeps running.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from 'cbor-x';
import { Level } from 'level';
import mqtt, { type MqttClient } from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_POLICY } from '../../../transport/policy/default.ts';
import { buildPki, type Issued } from '../../helpers/pki.ts';
import { connectFailure } from '../setup.ts';
import { type BrokerChild, startChild, writeMaterial } from './child.ts';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-wills-'));
const pki = await buildPki();
// Stored wills are checked and published every 4 heartbeats: 400 ms here instead of 4 min.
// The default policy, and a watcher that may read every device's status.
const material = writeMaterial(pki, dir, {
  limits: { heartbeatIntervalMs: 100 },
  policy: {
    version: 1,
    rules: [
      ...DEFAULT_POLICY.rules,
      { match: '{self}/device/watcher', subscribe: ['devices/+/status', 'devices/+/cmd'] },
    ],
  },
});
const evil = await pki.device('evil');
const watcher = await pki.device('watcher');
const children: BrokerChild[] = [];

function connect(port: number, who: Issued, opts: Partial<mqtt.IClientOptions> = {}): Promise<MqttClient> {
  const c = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
    key: who.pem.key,
    cert: who.pem.cert,
    ca: pki.bundlePem,
    clientId: who.id.split('/').pop() as string,
    reconnectPeriod: 0,
    keepalive: 30,
    ...opts,
  });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

const will = (topic: string, retain = true) => ({
  will: { topic, payload: Buffer.from('gone'), qos: 1 as const, retain },
});

test('a will the owner may not publish is refused at CONNECT with CONNACK 5 and a typed code', async () => {
  const child = await startChild(material, dir);
  children.push(child);
  const deep = `devices/evil/${Array.from({ length: 120 }, (_, i) => `l${i}`).join('/')}`;
  for (const [topic, code] of [
    ['$edgeward/bundle', 'ERR_MQTT_RESERVED_TOPIC'],
    ['$edgeward/reply/watcher', 'ERR_MQTT_RESERVED_TOPIC'],
    ['devices/watcher/cmd', 'ERR_MQTT_WILL_DENIED'],
    [deep, 'ERR_MQTT_TOPIC_INVALID'],
  ] as const) {
    const got = await connectFailure(child.port, evil, pki.bundlePem, { clean: false, ...will(topic) });
    assert.is(got, 5, topic);
    const line = await child.waitLog((l) => l.msg === 'CONNECT refused' && l.code === code);
    assert.match(String(line.reason), /will/);
  }
});

test('after kill -9, journaled wills are judged again: the legitimate one is published, forged ones dropped', async () => {
  const first = children[0] as BrokerChild;
  // A legitimate retained will in the device's own subtree, on a persistent session.
  const c = await connect(first.port, evil, { clean: false, ...will('devices/evil/status') });
  assert.ok(c.connected);
  // The will is journaled before the CONNACK (aedes stores it before answering); kill now.
  await first.kill9();
  c.end(true);

  // What an older broker (no owner recorded) or a tampered journal would hold.
  const db = new Level<string, Uint8Array>(join(dir, 'store'), {
    keyEncoding: 'utf8',
    valueEncoding: 'view',
  });
  const j = db.sublevel<string, Uint8Array>('mqtt', { keyEncoding: 'utf8', valueEncoding: 'view' });
  const keys = await j.keys().all();
  assert.ok(keys.includes('w!evil'), `the will is journaled: ${keys.join()}`);
  const forged = encode({ trustDomain: pki.trustDomain, sequence: 999, roots: [new Uint8Array([1, 2, 3])] });
  const stored = (topic: string, owner: string | undefined) =>
    encode({
      cmd: 'publish',
      topic,
      payload: forged,
      qos: 1,
      retain: true,
      dup: false,
      brokerId: 'crashed-broker',
      ...(owner === undefined ? {} : { edgewardOwner: owner }),
    });
  await j.put('w!forger', stored('$edgeward/bundle', evil.id));
  await j.put('w!ownerless', stored('devices/evil/other', undefined));
  await j.put('w!thief', stored('devices/watcher/cmd', evil.id));
  await j.put('w!deep', stored(`devices/evil/${'x/'.repeat(119)}x`, evil.id));
  await db.close();

  const second = await startChild(material, dir);
  children.push(second);
  for (const [clientId, code] of [
    ['forger', 'ERR_MQTT_RESERVED_TOPIC'],
    ['ownerless', 'ERR_MQTT_WILL_DENIED'],
    ['thief', 'ERR_MQTT_WILL_DENIED'],
    ['deep', 'ERR_MQTT_TOPIC_INVALID'],
  ] as const) {
    const line = await second.waitLog((l) => l.msg === 'stored will dropped' && l.clientId === clientId);
    assert.is(line.code, code, clientId);
  }

  const w = await connect(second.port, watcher);
  const bundles: Buffer[] = [];
  const seen: string[] = [];
  w.on('message', (t, p) => {
    if (t === '$edgeward/bundle') bundles.push(p);
    else seen.push(`${t}=${p.toString()}`);
  });
  const gone = new Promise<string>((resolve) =>
    w.on('message', (t, p) => {
      if (t === 'devices/evil/status') resolve(p.toString());
    }),
  );
  await w.subscribeAsync(['$edgeward/bundle', 'devices/+/status', 'devices/+/cmd'], { qos: 1 });
  assert.is(await gone, 'gone', 'the legitimate will was replayed (retained, or live)');
  // Sentinel for the absence of the other wills (the thief's on devices/watcher/cmd, the
  // forged bundle): a message the watcher publishes after the replay comes back; they never did.
  const sentinel = new Promise<void>((resolve) =>
    w.on('message', (t) => {
      if (t === 'devices/watcher/status') resolve();
    }),
  );
  await w.publishAsync('devices/watcher/status', 'sentinel', { qos: 1 });
  await sentinel;
  assert.equal(seen, ['devices/evil/status=gone', 'devices/watcher/status=sentinel']);
  // A fresh subscription to the retained bundle sees the gateway's bundle, not the forged one.
  const w2 = await connect(second.port, await pki.device('watcher-2'));
  const retained = new Promise<Buffer>((resolve) => w2.once('message', (_t, p) => resolve(p)));
  await w2.subscribeAsync('$edgeward/bundle', { qos: 1 });
  assert.is(
    (decode(await retained) as { sequence: number }).sequence,
    1,
    'the retained bundle is the gateway’s',
  );
  for (const b of bundles) assert.is((decode(b) as { sequence: number }).sequence, 1);
  w.end(true);
  w2.end(true);

  await second.kill9();
  assert.is(second.process.signalCode, 'SIGKILL', 'the broker ran until killed (no crash)');
  const db2 = new Level<string, Uint8Array>(join(dir, 'store'), {
    keyEncoding: 'utf8',
    valueEncoding: 'view',
  });
  const keysAfter = await db2
    .sublevel<string, Uint8Array>('mqtt', { keyEncoding: 'utf8', valueEncoding: 'view' })
    .keys()
    .all();
  await db2.close();
  for (const k of ['w!forger', 'w!ownerless', 'w!thief', 'w!deep', 'w!evil'])
    assert.not.ok(keysAfter.includes(k), `${k} deleted from the journal: ${keysAfter.join()}`);
});

test.after(async () => {
  for (const c of children) if (c.process.exitCode === null && c.process.signalCode === null) await c.kill9();
  rmSync(dir, { recursive: true, force: true });
});

test.run();
