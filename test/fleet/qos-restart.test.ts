/**
 * Issue 9's invariant "no QoS 1 message acknowledged to a publisher is lost across rotation or
 * restart", reduced from the fleet simulator's violations (173 lost messages in a 72 h run, all at
 * gateway restarts): the broker kept persistent sessions in memory only. With the durable
 * persistence (transport/mqtt/persistence) on a LevelDB sublevel, a restarted broker resumes a
 * clean=false subscriber's session — its subscription and its queued QoS 1 messages — after a
 * graceful restart and after a kill-style stop (the broker dropped without awaiting its close).
 * Real TLS sockets and the real mqtt.js client; duplicates are allowed, losses are not.
 */
import { MemoryLevel } from 'memory-level';
import mqtt, { type MqttClient } from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Broker, startBroker } from '../../transport/mqtt/broker.ts';
import type { JournalDb } from '../../transport/mqtt/persistence/journal.ts';
import type { Policy } from '../../transport/policy/schema.ts';
import type { Issued } from '../helpers/pki.ts';
import { rig } from '../transport/setup.ts';

const policy: Policy = {
  version: 1,
  rules: [
    { match: '{self}/device/*', publish: ['devices/{device}/#'] },
    { match: '{self}/device/collector', subscribe: ['devices/+/#'] },
  ],
};
const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
/**
 * One process's view of the store: after `kill()` nothing more it writes reaches the store, as
 * after a kill -9 (its later batches fail), so two incarnations never write the journal at once.
 */
function incarnation(): { db: JournalDb; kill(): void } {
  let dead = false;
  return {
    db: {
      batch: (ops) => (dead ? Promise.reject(new Error('killed')) : db.batch(ops as never)),
      iterator: () => db.iterator(),
    },
    kill: () => {
      dead = true;
    },
  };
}
let life = incarnation();
const r = await rig({ policy, persistence: { db: life.db } });
const collectorId = await r.pki.device('collector');
const publisherId = await r.pki.device('pub-1');

function restart(port: number): Promise<Broker> {
  life = incarnation();
  return startBroker({
    svidSource: r.svids,
    bundleSource: r.bundles,
    revocationSource: r.revocations,
    deviceSigner: r.pki.signer(r.clock),
    tokenStore: r.tokens,
    trustDomain: r.pki.trustDomain,
    clock: r.clock,
    policy,
    persistence: { db: life.db },
    listen: { host: '127.0.0.1', port },
  });
}

async function connectTo(broker: Broker, who: Issued, clean: boolean): Promise<MqttClient> {
  const c = mqtt.connect(`mqtts://127.0.0.1:${broker.addresses.mqtt.port}`, {
    key: who.pem.key,
    cert: who.pem.cert,
    ca: r.pki.bundlePem,
    clientId: who.id.split('/').pop() as string,
    reconnectPeriod: 0,
    clean,
  });
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  return c;
}

/** Collects payloads starting with `prefix` until `want` distinct ones arrived (or 3 s passed). */
function collect(client: MqttClient, prefix: string, want: number): Promise<Set<string>> {
  const got = new Set<string>();
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(got), 3_000);
    client.on('message', (_t, p) => {
      if (p.toString().startsWith(prefix)) got.add(p.toString());
      if (got.size >= want) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

let current: Broker = r.broker;

test('a QoS 1 message acknowledged after a broker restart reaches the persistent subscriber', async () => {
  const first = await r.connect(collectorId, { clean: false });
  await first.subscribeAsync('devices/+/t', { qos: 1 });
  first.end(true);

  // The gateway restarts: same identity, same port, same sources, same store.
  await r.broker.close();
  current = await restart(r.port);
  const pub = await connectTo(current, publisherId, false);
  await pub.publishAsync('devices/pub-1/t', 'acknowledged', { qos: 1 }); // resolves on PUBACK
  pub.end(true);
  const collector = await connectTo(current, collectorId, false);
  const got = await collect(collector, 'ack', 1);
  await collector.endAsync(); // a graceful end: its PUBACKs are sent
  assert.equal([...got], ['acknowledged'], 'the acknowledged message was delivered after the restart');
});

test('messages queued for an offline subscriber survive a graceful restart', async () => {
  const pub = await connectTo(current, publisherId, true);
  for (let i = 0; i < 50; i++) await pub.publishAsync('devices/pub-1/t', `g-${i}`, { qos: 1 });
  pub.end(true);
  await current.close();
  current = await restart(0);
  assert.ok((current.persistenceStats()?.queued ?? 0) >= 50, 'the queue was restored');
  const collector = await connectTo(current, collectorId, false);
  const got = await collect(collector, 'g-', 50);
  await collector.endAsync(); // a graceful end: its PUBACKs are sent
  for (let i = 0; i < 50; i++) assert.ok(got.has(`g-${i}`), `g-${i} delivered`);
});

test('a kill-style stop (close not awaited, a new broker at once) loses no acknowledged message', async () => {
  const pub = await connectTo(current, publisherId, true);
  const acked: string[] = [];
  for (let i = 0; i < 100; i++) {
    await pub.publishAsync('devices/pub-1/t', `k-${i}`, { qos: 1 });
    acked.push(`k-${i}`);
  }
  pub.end(true);
  const dying = current;
  life.kill(); // the process is gone: nothing it still had to write reaches the store
  void dying.close(); // not awaited: the next broker opens the same journal at once
  current = await restart(0);
  const collector = await connectTo(current, collectorId, false);
  const got = await collect(collector, 'k-', acked.length);
  await collector.endAsync(); // a graceful end: its PUBACKs are sent
  for (const m of acked) assert.ok(got.has(m), `${m} delivered`);
  await dying.close();
});

test('acknowledged by the subscriber = gone from the journal', async () => {
  await current.close();
  current = await restart(0);
  const pending = current.persistenceStats()?.queued ?? 0;
  const collector = await connectTo(current, collectorId, false);
  if (pending > 0) await collect(collector, '', pending);
  await collector.endAsync();
  await current.close();
  current = await restart(0);
  assert.is(current.persistenceStats()?.queued, 0);
  assert.is(current.persistenceStats()?.sessions, 1, 'the collector session stays');
});

test.after(async () => {
  await current.close();
  await r.close();
  await db.close();
});

test.run();
