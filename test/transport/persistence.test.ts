/**
 * The durable aedes persistence (transport/mqtt/persistence) on its own and under a real broker:
 * clean sessions leave nothing in the journal, the queue caps drop the oldest messages (counted),
 * a corrupt journal entry is dropped with ERR_MQTT_JOURNAL_CORRUPT and the rest still loads, and a
 * write that fails surfaces as ERR_MQTT_JOURNAL_WRITE.
 */
import { encode } from 'cbor-x';
import { MemoryLevel } from 'memory-level';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryLogger } from '../../runtime/core/logger.ts';
import type { StoredPacket } from '../../transport/mqtt/persistence/codec.ts';
import { DurablePersistence } from '../../transport/mqtt/persistence/durable.ts';
import type { JournalDb } from '../../transport/mqtt/persistence/journal.ts';
import type { Policy } from '../../transport/policy/schema.ts';
import { rejects } from '../helpers/rejects.ts';
import { rig } from './setup.ts';

const newDb = () => new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
async function keys(db: MemoryLevel<string, Uint8Array>): Promise<string[]> {
  return db.keys().all();
}
const packet = (topic: string, payload: string, n: number): StoredPacket => ({
  cmd: 'publish',
  topic,
  payload: Buffer.from(payload),
  qos: 1,
  retain: false,
  dup: false,
  brokerId: 'b1',
  brokerCounter: n,
});
const persistent = { id: 'dev-1', clean: false };

test('clean sessions publishing and subscribing at QoS 1 leave nothing in the journal', async () => {
  const db = newDb();
  const policy: Policy = {
    version: 1,
    rules: [{ match: '{self}/device/*', publish: ['devices/{device}/#'], subscribe: ['devices/+/#'] }],
  };
  const r = await rig({ policy, persistence: { db: db as unknown as JournalDb } });
  try {
    const before = await keys(db); // the retained bundle topic only
    assert.ok(
      before.every((k) => k.startsWith('r!')),
      before.join(),
    );
    const sub = await r.connect(await r.pki.device('s1'));
    await sub.subscribeAsync('devices/+/t', { qos: 1 });
    const got = new Promise<void>((resolve) => sub.once('message', () => resolve()));
    const pub = await r.connect(await r.pki.device('p1'));
    for (let i = 0; i < 20; i++) await pub.publishAsync('devices/p1/t', `m${i}`, { qos: 1, properties: {} });
    await got;
    await sub.endAsync();
    await pub.endAsync();
    assert.equal(await keys(db), before);
    assert.is(r.broker.persistenceStats()?.sessions, 0);
  } finally {
    await r.close();
    await db.close();
  }
});

test('caps: per session and in bytes, the oldest messages are dropped and counted', async () => {
  const db = newDb();
  const logger = new MemoryLogger();
  const p = await DurablePersistence.open({
    db: db as unknown as JournalDb,
    limits: { maxPerSession: 3, maxBytes: 1000 },
    logger,
  });
  for (let i = 1; i <= 5; i++) await p.outgoingEnqueue({ clientId: 'a' }, packet('t/a', `a${i}`, i));
  assert.is(p.stats().queued, 3);
  assert.is(p.stats().dropped, 2);
  assert.ok(logger.lines.some((l) => l.msg.includes('oldest messages dropped')));
  // bytes: a large message pushes out the oldest of all sessions
  await p.outgoingEnqueue({ clientId: 'b' }, packet('t/b', 'x'.repeat(990), 9));
  assert.ok(p.stats().queuedBytes <= 1000);
  assert.is(p.stats().dropped, 4, 'a3 and a4, the oldest of all sessions, made room');
  await p.flushed();
  const again = await DurablePersistence.open({
    db: db as unknown as JournalDb,
    limits: { maxPerSession: 3 },
  });
  assert.is(again.stats().queued, p.stats().queued, 'the journal holds exactly what memory holds');
  const left: string[] = [];
  for await (const x of again.outgoingStream({ id: 'a' })) left.push((x as StoredPacket).payload.toString());
  assert.equal(left, ['a5']);
  await db.close();
});

test('a corrupt journal entry is dropped with a typed, logged reason; the rest loads', async () => {
  const db = newDb();
  const p = await DurablePersistence.open({ db: db as unknown as JournalDb });
  await p.addSubscriptions(persistent, [{ topic: 'devices/+/t', qos: 1 }]);
  await p.outgoingEnqueue({ clientId: 'dev-1' }, packet('devices/x/t', 'kept', 1));
  await p.flushed();
  await db.put('q!00000000000ff', Uint8Array.of(0xff, 0x00, 0x13)); // not CBOR
  await db.put('s!dev-2', encode([{ topic: 7, qos: 9 }])); // not a subscription
  await db.put('z!what', encode('?')); // unknown kind
  const logger = new MemoryLogger();
  const again = await DurablePersistence.open({ db: db as unknown as JournalDb, logger });
  const dropped = logger.lines.filter((l) => l.msg === 'broker journal entry dropped');
  assert.is(dropped.length, 3);
  assert.ok(dropped.every((l) => l.fields.code === 'ERR_MQTT_JOURNAL_CORRUPT'));
  assert.is(again.stats().corrupt, 3);
  assert.is(again.stats().queued, 1);
  assert.equal(
    (await again.subscriptionsByClient({ id: 'dev-1' })).map(({ topic, qos }) => ({ topic, qos })),
    [{ topic: 'devices/+/t', qos: 1 }],
  );
  await again.flushed();
  assert.not.ok((await keys(db)).some((k) => k === 's!dev-2' || k === 'z!what' || k === 'q!00000000000ff'));
  await db.close();
});

test('a journal write that fails is ERR_MQTT_JOURNAL_WRITE', async () => {
  const db = newDb();
  const p = await DurablePersistence.open({ db: db as unknown as JournalDb });
  await db.close();
  await rejects(() => p.outgoingEnqueue({ clientId: 'a' }, packet('t', 'x', 1)), 'ERR_MQTT_JOURNAL_WRITE');
});

test.run();
