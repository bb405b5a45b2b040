/**
 * Shared subscriptions (`$share/<group>/<filter>`). aedes 1.2 has no shared-subscription
 * delivery: it acknowledges such a SUBSCRIBE with the granted QoS and then delivers nothing to
 * the group. The first test pins that premise on a plain aedes (if a later aedes delivers, it
 * fails, and transport/mqtt/shared.ts can be revisited). The others run edgeward's own routing
 * with real clients (mqtt.js and mosquitto_sub, MQTT 3.1.1): one member per message, round
 * robin, per group; leaving on UNSUBSCRIBE, disconnect and revocation; the policy's `$share`
 * grants (default deny both ways); malformed filters; retained messages; QoS downgrade; and a
 * persistent member rejoining at reconnect, also after a broker restart with the durable journal.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import { MemoryLevel } from 'memory-level';
import mqtt, { type MqttClient } from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryTokenStore } from '../../transport/enroll/token-store.ts';
import { startBroker } from '../../transport/mqtt/broker.ts';
import type { JournalDb } from '../../transport/mqtt/persistence/journal.ts';
import type { Policy } from '../../transport/policy/schema.ts';
import { type Issued, makeCert, writeIdentityFiles } from '../helpers/pki.ts';
import { connectPacket, rawTls, rig } from './setup.ts';

const POLICY: Policy = {
  version: 1,
  rules: [
    {
      match: '{self}/device/*',
      publish: ['devices/{device}/#'],
      subscribe: ['devices/{device}/#'],
      retain: ['devices/{device}/#'],
    },
    {
      match: '{self}/svc/*',
      clientId: 'any',
      maxConnections: 4,
      subscribe: ['$share/+/devices/+/#', '$share/{name}/jobs/#', 'plain/#'],
    },
    {
      match: '{self}/obs/*',
      clientId: 'any',
      maxConnections: 4,
      subscribe: ['devices/+/#', '$share/obs/devices/+/#'],
    },
  ],
};
const r = await rig({ policy: POLICY });

async function identity(path: string): Promise<Issued> {
  const id = `${r.pki.gateway.id}/${path}`;
  const c = await makeCert({
    subject: `CN=${path.split('/').pop()}`,
    uris: [id],
    notBefore: r.clock.now() - 60_000,
    notAfter: r.clock.now() + 3600_000,
    issuer: r.pki.root,
  });
  const pem = { cert: c.cert.toString(), key: c.key.export({ type: 'pkcs8', format: 'pem' }) as string };
  const svid = { spiffeId: id, chain: [c.cert], privateKey: c.key, notAfter: Date.parse(c.cert.validTo) };
  return { id, cert: c.cert, key: c.key, chain: [c.cert], pem, svid };
}

/** Polls `cond` (deliveries happen on the broker's own schedule); fails after 5 s. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((res) => setTimeout(res, 10));
  }
  assert.unreachable(`timed out waiting for ${what}: ${JSON.stringify(r.broker.sharedStats())}`);
}

/** Records the payloads a client receives (as text). */
function record(c: MqttClient): string[] {
  const got: string[] = [];
  c.on('message', (_t, payload) => got.push(payload.toString()));
  return got;
}

/** SUBSCRIBE and return the SUBACK's granted codes (128 = refused; mqtt.js would reject on one). */
function subscribe(c: MqttClient, topics: string[], qos: 0 | 1 | 2 = 1): Promise<number[]> {
  return new Promise((resolve) => {
    const on = (p: { cmd: string; granted?: unknown }): void => {
      if (p.cmd !== 'suback') return;
      c.off('packetreceive', on);
      resolve(p.granted as number[]);
    };
    c.on('packetreceive', on);
    c.subscribe(topics, { qos }, () => {});
  });
}

/** The client and topic of the last `publishN`, which `exactlyOnce` sends its sentinels through. */
let lastVia: { pub: MqttClient; topic: string } | undefined;

async function publishN(pub: MqttClient, topic: string, n: number, tag: string): Promise<string[]> {
  lastVia = { pub, topic };
  const sent: string[] = [];
  for (let i = 0; i < n; i++) {
    sent.push(`${tag}-${i}`);
    await pub.publishAsync(topic, `${tag}-${i}`, { qos: 1 });
  }
  return sent;
}

const SENTINEL = 'sentinel-';
let sentinels = 0;

/**
 * Each of `sent` received exactly once across `members`. A late duplicate is ruled out without a
 * sleep: one sentinel per member is published after `sent` through the same client and topic
 * (round robin hands each member one), and each member's connection delivers in order, so once
 * every member has its sentinel nothing sent before can still arrive.
 */
async function exactlyOnce(members: (string[] | (() => string[]))[], sent: string[]): Promise<void> {
  const lists = () => members.map((m) => (typeof m === 'function' ? m() : m));
  const real = () => lists().map((l) => l.filter((x) => !x.startsWith(SENTINEL)));
  const total = () => real().reduce((n, m) => n + m.length, 0);
  await until(() => total() >= sent.length, `${sent.length} deliveries`);
  const via = lastVia as { pub: MqttClient; topic: string };
  const mine: string[] = [];
  for (let i = 0; i < members.length; i++) {
    const tag = `${SENTINEL}${sentinels++}`;
    mine.push(tag);
    await via.pub.publishAsync(via.topic, tag, { qos: 1 });
  }
  await until(
    () => lists().every((l) => l.some((x) => mine.includes(x))) || members.length === 0,
    'a sentinel at every member',
  );
  // The sentinels leave the members' records, so callers count only what they sent.
  for (const m of members)
    if (Array.isArray(m))
      for (let i = m.length - 1; i >= 0; i--) if ((m[i] as string).startsWith(SENTINEL)) m.splice(i, 1);
  const all = real().flat();
  assert.is(all.length, sent.length, 'no message delivered twice');
  assert.equal([...all].sort(), [...sent].sort(), 'every message delivered once');
}

const members = () => r.broker.sharedStats().members;
let pub: MqttClient;

test.before(async () => {
  pub = await r.connect(await r.pki.device('s1'));
});

test('premise: plain aedes 1.2 acknowledges $share and delivers nothing to the group', async () => {
  const aedes = await Aedes.createBroker();
  const server = createServer((s) => aedes.handle(s));
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const url = `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`;
  const ms = await Promise.all([0, 1].map((i) => mqtt.connectAsync(url, { clientId: `m${i}` })));
  const plain = await mqtt.connectAsync(url, { clientId: 'plain' });
  const got = [0, 0];
  let plainGot = 0;
  for (const [i, m] of ms.entries()) {
    const granted = await m.subscribeAsync('$share/g/jobs/#', { qos: 1 });
    assert.is(granted[0]?.qos, 1, 'aedes grants the shared subscription');
    m.on('message', () => {
      got[i] = (got[i] ?? 0) + 1;
    });
  }
  await plain.subscribeAsync('jobs/#', { qos: 1 });
  const allPlain = new Promise<void>((res) =>
    plain.on('message', () => {
      if (++plainGot === 5) res();
    }),
  );
  const p = await mqtt.connectAsync(url, { clientId: 'pub' });
  for (let i = 0; i < 5; i++) await p.publishAsync('jobs/x', String(i), { qos: 1 });
  await allPlain; // the plain subscriber got all five: deliveries had every chance to happen
  await new Promise((res) => setImmediate(res));
  assert.equal(got, [0, 0], 'no member of the group received anything');
  for (const c of [...ms, plain, p]) await c.endAsync();
  await new Promise<void>((res) => aedes.close(() => server.close(() => res())));
});

test('mqtt.js members: each message to exactly one member, round robin; a plain subscriber gets all', async () => {
  const a = await r.connect(await identity('svc/rr-a'));
  const b = await r.connect(await identity('svc/rr-b'));
  const obs = await r.connect(await identity('obs/rr'));
  const [ga, gb, go] = [record(a), record(b), record(obs)];
  assert.equal(await subscribe(a, ['$share/rr/devices/+/#']), [1]);
  assert.equal(await subscribe(b, ['$share/rr/devices/+/#']), [1]);
  assert.equal(await subscribe(obs, ['devices/+/#']), [1]);
  const sent = await publishN(pub, 'devices/s1/rr', 20, 'rr');
  await exactlyOnce([ga, gb], sent);
  assert.is(ga.length, 10, 'round robin: half each');
  assert.is(gb.length, 10);
  await until(() => go.length >= 20, 'the plain subscriber');
  assert.equal(
    go.filter((x) => !x.startsWith(SENTINEL)),
    sent,
    'the plain subscriber is unaffected',
  );
  for (const c of [a, b, obs]) await c.endAsync();
  await until(() => members() === 0, 'members to leave on disconnect');
  assert.is(r.broker.sharedStats().groups, 0, 'an empty group is dropped');
});

test('mosquitto_sub as a member next to mqtt.js: exactly once across the group, both receive', async () => {
  const who = await identity('svc/mosq');
  const dir = join(r.tmp, 'share-mosq');
  mkdirSync(dir, { recursive: true });
  const files = writeIdentityFiles(dir, who, r.pki.bundlePem);
  const a = await r.connect(await identity('svc/mosq-a'));
  const ga = record(a);
  assert.equal(await subscribe(a, ['$share/mg/devices/+/#']), [1]);
  const child: ChildProcess = spawn('mosquitto_sub', [
    ...['-h', '127.0.0.1', '-p', String(r.port), '--cafile', files.ca, '--cert', files.cert],
    ...['--key', files.key, '-i', 'mosq', '-q', '1', '-t', '$share/mg/devices/+/#'],
  ]);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise((res) => child.once('exit', res));
  try {
    await until(() => members() === 2, 'mosquitto_sub to join');
    const sent = await publishN(pub, 'devices/s1/mq', 10, 'mq');
    const gm = () => out.split('\n').filter(Boolean);
    await exactlyOnce([ga, gm], sent);
    assert.ok(ga.length > 0 && gm().length > 0, `both received: ${ga.length} + ${gm().length}`);
  } finally {
    child.kill('SIGTERM');
    await exited;
    await a.endAsync();
  }
});

test('a member disconnecting: the others receive everything', async () => {
  const [a, b, c] = await Promise.all(
    ['dc-a', 'dc-b', 'dc-c'].map(async (n) => r.connect(await identity(`svc/${n}`))),
  );
  const [ga, gb, gc] = [record(a as MqttClient), record(b as MqttClient), record(c as MqttClient)];
  for (const m of [a, b, c]) await subscribe(m as MqttClient, ['$share/dc/devices/s1/#']);
  await (b as MqttClient).endAsync();
  await until(() => members() === 2, 'b to leave');
  const sent = await publishN(pub, 'devices/s1/dc', 12, 'dc');
  await exactlyOnce([ga, gc], sent);
  assert.is(gb.length, 0);
  assert.is(ga.length, 6);
  for (const m of [a, c]) await (m as MqttClient).endAsync();
  await until(() => members() === 0, 'members to leave');
});

test('two groups on the same filter: each group gets every message', async () => {
  const a1 = await r.connect(await identity('svc/two-a1'));
  const a2 = await r.connect(await identity('svc/two-a2'));
  const b1 = await r.connect(await identity('svc/two-b1'));
  const [g1, g2, g3] = [record(a1), record(a2), record(b1)];
  await subscribe(a1, ['$share/ga/devices/+/#']);
  await subscribe(a2, ['$share/ga/devices/+/#']);
  await subscribe(b1, ['$share/gb/devices/+/#']);
  assert.is(r.broker.sharedStats().groups, 2);
  const sent = await publishN(pub, 'devices/s1/two', 8, 'two');
  await exactlyOnce([g1, g2], sent);
  await exactlyOnce([g3], sent);
  for (const c of [a1, a2, b1]) await c.endAsync();
  await until(() => members() === 0, 'members to leave');
});

test('UNSUBSCRIBE leaves the group', async () => {
  const a = await r.connect(await identity('svc/un-a'));
  const b = await r.connect(await identity('svc/un-b'));
  const [ga, gb] = [record(a), record(b)];
  await subscribe(a, ['$share/un/devices/s1/#']);
  await subscribe(b, ['$share/un/devices/s1/#']);
  await a.unsubscribeAsync('$share/un/devices/s1/#');
  await until(() => members() === 1, 'a to leave');
  const sent = await publishN(pub, 'devices/s1/un', 6, 'un');
  await exactlyOnce([gb], sent);
  assert.is(ga.length, 0);
  for (const c of [a, b]) await c.endAsync();
  await until(() => members() === 0, 'members to leave');
});

test('QoS: min(message QoS, granted QoS)', async () => {
  const a = await r.connect(await identity('svc/qos-a'));
  const qos: number[] = [];
  a.on('message', (_t, _p, packet) => qos.push(packet.qos));
  assert.equal(await subscribe(a, ['$share/q/devices/s1/#'], 0), [0]);
  await pub.publishAsync('devices/s1/q', 'one', { qos: 1 });
  await until(() => qos.length === 1, 'first');
  assert.is(qos[0], 0, 'QoS 1 message to a QoS 0 member: QoS 0');
  assert.equal(await subscribe(a, ['$share/q/devices/s1/#'], 2), [2]);
  assert.is(members(), 1, 'subscribing again only changes the QoS');
  await pub.publishAsync('devices/s1/q', 'two', { qos: 1 });
  await pub.publishAsync('devices/s1/q', 'three', { qos: 0 });
  await until(() => qos.length === 3, 'two more');
  assert.equal(qos.slice(1), [1, 0], 'the message QoS when the member was granted more');
  await a.endAsync();
  await until(() => members() === 0, 'member to leave');
});

test('a member that also holds a plain subscription receives both copies', async () => {
  const o = await r.connect(await identity('obs/both'));
  const got = record(o);
  assert.equal(await subscribe(o, ['$share/obs/devices/s1/#', 'devices/s1/#']), [1, 1]);
  const sent = await publishN(pub, 'devices/s1/both', 10, 'both');
  await until(() => got.length >= 20, 'twenty deliveries');
  assert.equal([...got].sort(), [...sent, ...sent].sort());
  await o.endAsync();
  await until(() => members() === 0, 'member to leave');
});

test('default deny both ways: ungranted shares and plain filters get SUBACK 0x80, logged', async () => {
  const w = await r.connect(await identity('svc/worker'));
  const o = await r.connect(await identity('obs/deny'));
  // svc: $share/+/devices/+/# and $share/{name}/jobs/# but only plain/# as a plain filter.
  assert.equal(
    await subscribe(w, [
      'devices/s1/#',
      '$share/g/plain/#',
      '$share/worker/jobs/#',
      '$share/other/jobs/#',
      'plain/x',
    ]),
    [128, 128, 1, 128, 1],
  );
  // obs: devices/+/# plain, and only the group obs.
  assert.equal(await subscribe(o, ['$share/g/devices/+/#', '$share/obs/devices/s1/t']), [128, 1]);
  const denied = r.logger.lines
    .filter((l) => l.msg === 'SUBSCRIBE refused' && l.fields.code === 'ERR_SHARED_SUBSCRIPTION_DENIED')
    .map((l) => l.fields.topic);
  assert.equal(denied, ['$share/g/plain/#', '$share/other/jobs/#', '$share/g/devices/+/#']);
  for (const c of [w, o]) await c.endAsync();
  await until(() => members() === 0, 'members to leave');
});

test('malformed $share filters: SUBACK 0x80 with ERR_SHARED_SUBSCRIPTION_MALFORMED', async () => {
  const w = await r.connect(await identity('svc/bad'));
  const bad = ['$share', '$share/g', '$share//devices/s1/#', '$share/+/devices/s1/#', '$share/g/'];
  assert.equal(await subscribe(w, bad), [128, 128, 128, 128, 128]);
  const logged = r.logger.lines
    .filter((l) => l.fields.code === 'ERR_SHARED_SUBSCRIPTION_MALFORMED' && l.fields.clientId === 'bad')
    .map((l) => l.fields.topic);
  assert.equal(logged.sort(), [...bad].sort());
  assert.is(members(), 0);
  await w.endAsync();
});

test('a device under the default-style rules gets 0x80 for $share on its own subtree, also from mosquitto_sub', async () => {
  const dev = await r.pki.device('s2');
  const dir = join(r.tmp, 'share-s2');
  mkdirSync(dir, { recursive: true });
  const files = writeIdentityFiles(dir, dev, r.pki.bundlePem);
  // mosquitto_sub 2.0.11 reports SUBACK 0x80 only in its debug output.
  const child = spawn('mosquitto_sub', [
    ...['-h', '127.0.0.1', '-p', String(r.port), '--cafile', files.ca, '--cert', files.cert],
    ...['--key', files.key, '-d', '-i', 's2', '-t', '$share/g/devices/s2/#', '-C', '1', '-W', '2'],
  ]);
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  await new Promise((res) => child.once('exit', res));
  assert.match(out, /Subscribed \(mid: \d+\): 128/, out);
  assert.ok(
    r.logger.lines.some(
      (l) => l.fields.code === 'ERR_SHARED_SUBSCRIPTION_DENIED' && l.fields.topic === '$share/g/devices/s2/#',
    ),
  );
});

test('retained messages are not sent on a shared SUBSCRIBE', async () => {
  await pub.publishAsync('devices/s1/state', 'kept', { qos: 1, retain: true });
  const o = await r.connect(await identity('obs/ret'));
  const retained = new Promise<string>((res) => o.once('message', (_t, p) => res(p.toString())));
  await subscribe(o, ['devices/s1/state']);
  assert.is(await retained, 'kept', 'the retained message exists');
  const w = await r.connect(await identity('svc/ret-w'));
  const got: { payload: string; retain: boolean }[] = [];
  w.on('message', (_t, p, packet) => got.push({ payload: p.toString(), retain: packet.retain }));
  await subscribe(w, ['$share/ret/devices/s1/state']);
  await pub.publishAsync('devices/s1/state', 'live', { qos: 1 });
  await pub.publishAsync('devices/s1/state', 'sentinel', { qos: 1 });
  await until(() => got.length >= 2, 'the live message and the sentinel');
  assert.equal(got, [
    { payload: 'live', retain: false },
    { payload: 'sentinel', retain: false },
  ]);
  await pub.publishAsync('devices/s1/state', '', { qos: 1, retain: true }); // clear
  for (const c of [o, w]) await c.endAsync();
  await until(() => members() === 0, 'member to leave');
});

test('a revoked member receives nothing; the rest of the group gets every message', async () => {
  const ia = await identity('svc/rv-a');
  const a = await r.connect(ia);
  const b = await r.connect(await identity('svc/rv-b'));
  const [ga, gb] = [record(a), record(b)];
  await subscribe(a, ['$share/rv/devices/s1/#']);
  await subscribe(b, ['$share/rv/devices/s1/#']);
  r.revocations.revoke({ spiffeIds: [ia.id] });
  // Published at once, before the revoked connection's close has been processed.
  const sent = await publishN(pub, 'devices/s1/rv', 10, 'rv');
  await exactlyOnce([gb], sent);
  assert.is(ga.length, 0);
  await b.endAsync();
  await until(() => members() === 0, 'members to leave');
});

test('a policy reload that removes the $share grant stops deliveries; granting it again resumes them', async () => {
  const a = await r.connect(await identity('svc/rl'));
  const got = record(a);
  await subscribe(a, ['$share/rl/devices/s1/#']);
  const narrowed: Policy = {
    version: 1,
    rules: POLICY.rules.map((rule) =>
      rule.match === '{self}/svc/*' ? { ...rule, subscribe: ['plain/#'] } : rule,
    ),
  };
  await r.broker.reloadPolicy(narrowed);
  const dropped = r.broker.sharedStats().dropped;
  await publishN(pub, 'devices/s1/rl', 3, 'gone');
  await until(() => r.broker.sharedStats().dropped === dropped + 3, 'drops');
  await r.broker.reloadPolicy(POLICY);
  const sent = await publishN(pub, 'devices/s1/rl', 3, 'back');
  await exactlyOnce([got], sent);
  await a.endAsync();
  await until(() => members() === 0, 'member to leave');
});

test('a persistent (clean=false) member rejoins its group at reconnect, without subscribing again', async () => {
  const who = await identity('svc/pers');
  const opts = { clientId: 'pers-1', clean: false };
  const first = await r.connect(who, opts);
  await subscribe(first, ['$share/pers/devices/s1/#']);
  await first.endAsync();
  await until(() => members() === 0, 'member to leave');
  // No member connected: dropped, not queued for the persistent member (exactlyOnce below).
  await pub.publishAsync('devices/s1/p', 'offline', { qos: 1 });
  const again = await r.connect(who, opts);
  const got = record(again);
  assert.is(members(), 1, 'restored with the session');
  const sent = await publishN(pub, 'devices/s1/p', 4, 'pers');
  await exactlyOnce([got], sent);
  await again.endAsync();
  await until(() => members() === 0, 'member to leave');
});

test('with the durable journal, a persistent member rejoins after a broker restart', async () => {
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
  const start = () =>
    startBroker({
      svidSource: r.svids,
      bundleSource: r.bundles,
      revocationSource: r.revocations,
      deviceSigner: r.pki.signer(r.clock),
      tokenStore: new MemoryTokenStore(),
      trustDomain: r.pki.trustDomain,
      clock: r.clock,
      logger: r.logger,
      listen: { host: '127.0.0.1', port: 0 },
      policy: POLICY,
      persistence: { db: db as unknown as JournalDb },
    });
  const connect = (port: number, who: Issued) =>
    mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
      key: who.pem.key,
      cert: who.pem.cert,
      ca: r.pki.bundlePem,
      clientId: who.id.split('/').pop() as string,
      clean: false,
      reconnectPeriod: 0,
      keepalive: 30,
    });
  const who = await identity('svc/durable');
  const dev = await r.pki.device('s9');
  let b = await start();
  const first = await connect(b.addresses.mqtt.port, who);
  await subscribe(first, ['$share/dur/devices/s9/#']);
  await first.endAsync();
  await b.close();
  b = await start();
  try {
    const again = await connect(b.addresses.mqtt.port, who);
    const got = record(again);
    assert.is(b.sharedStats().members, 1, 'the journaled subscription brought it back into its group');
    const p = await mqtt.connectAsync(`mqtts://127.0.0.1:${b.addresses.mqtt.port}`, {
      key: dev.pem.key,
      cert: dev.pem.cert,
      ca: r.pki.bundlePem,
      clientId: 's9',
      reconnectPeriod: 0,
    });
    const sent = await publishN(p, 'devices/s9/d', 5, 'dur');
    await exactlyOnce([got], sent);
    await again.endAsync();
    // Acknowledged deliveries left the session queue: nothing comes again at the next reconnect.
    // An unacknowledged one stays queued and is sent again (a raw client that never PUBACKs).
    const raw = await rawTls(b.addresses.mqtt.port, who, r.pki.bundlePem);
    let rawData = Buffer.alloc(0);
    const unacked = new Promise<void>((resolve) =>
      raw.on('data', (d: Buffer) => {
        rawData = Buffer.concat([rawData, d]);
        if (rawData.includes('unacked')) resolve();
      }),
    );
    raw.write(connectPacket('durable', false));
    await until(() => b.sharedStats().members === 1, 'the raw member to rejoin');
    await p.publishAsync('devices/s9/d', 'unacked', { qos: 1 });
    await unacked; // delivered to the raw member, which never acknowledges it
    raw.destroy();
    await until(() => b.sharedStats().members === 0, 'the raw member to leave');
    assert.is(b.persistenceStats()?.queued, 1, 'the unacknowledged delivery is in the journal');
    const last = await connect(b.addresses.mqtt.port, who);
    const lastGot = record(last);
    await p.publishAsync('devices/s9/d', 'sentinel', { qos: 1 });
    await until(() => lastGot.includes('sentinel'), 'the sentinel after the queued message');
    assert.equal(lastGot, ['unacked', 'sentinel'], 'only the unacknowledged message is sent again');
    await last.endAsync();
    await p.endAsync();
  } finally {
    await b.close();
    await db.close();
  }
});

test.after(() => r.close());
test.run();
