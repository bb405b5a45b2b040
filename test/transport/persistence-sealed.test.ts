/**
 * The session journal sealed like the rest of the store (issue 15 item 12): nothing of a payload
 * is readable in the LevelDB values, a restart restores the session, a tampered or moved value
 * is dropped as ERR_MQTT_JOURNAL_CORRUPT, and a journal written before sealing is read and then
 * written back sealed (nothing lost at the upgrade).
 */
import { randomBytes } from 'node:crypto';
import { encode } from 'cbor-x';
import { MemoryLevel } from 'memory-level';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryLogger } from '../../runtime/core/logger.ts';
import { cryptoRandom } from '../../runtime/core/random.ts';
import { openValue, sealValue } from '../../runtime/store/value-crypto.ts';
import { DurablePersistence } from '../../transport/mqtt/persistence/durable.ts';
import type { JournalDb } from '../../transport/mqtt/persistence/journal.ts';
import { SealedJournalDb, type ValueSealer } from '../../transport/mqtt/persistence/sealed-db.ts';

const key = randomBytes(32);
// The same functions and naming SealedStore.valueSealer('mqtt/') uses.
const sealer: ValueSealer = {
  seal: (name, v) => sealValue(key, `mqtt/${name}`, v, cryptoRandom),
  open: (name, v) => openValue(key, `mqtt/${name}`, v),
};
const raw = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
const db = raw as unknown as JournalDb;
const SECRET = Buffer.from('the-secret-payload-0123456789');

test('payloads are not in clear in the store; a reopened journal restores them', async () => {
  const logger = new MemoryLogger();
  const p = await DurablePersistence.open({ db: new SealedJournalDb(db, sealer), logger });
  await p.setup({ id: 'b1' });
  await p.addSubscriptions({ id: 'c1', clean: false }, [{ topic: 'devices/+/t', qos: 1 }]);
  await p.storeRetained({
    cmd: 'publish',
    topic: 'devices/d/state',
    payload: SECRET,
    qos: 1,
    retain: true,
    dup: false,
  });
  await p.outgoingEnqueueCombi([{ clientId: 'c1' }], {
    cmd: 'publish',
    topic: 'devices/d/t',
    payload: SECRET,
    qos: 1,
    retain: false,
    dup: false,
    brokerId: 'b1',
    brokerCounter: 1,
  });
  await p.flushed();
  const values = await raw.values().all();
  assert.ok(values.length >= 3);
  for (const v of values) {
    assert.is(v[0], 0x01, 'sealed format');
    assert.not.ok(Buffer.from(v).includes(SECRET), 'no payload in clear');
    assert.not.ok(Buffer.from(v).includes('devices/'), 'no topic in clear');
  }
  const again = await DurablePersistence.open({ db: new SealedJournalDb(db, sealer), logger });
  assert.equal(again.stats(), {
    sessions: 1,
    queued: 1,
    queuedBytes: SECRET.length + 11,
    dropped: 0,
    corrupt: 0,
  });
  assert.equal(again.takeRestoredRetained()[0]?.payload, SECRET);
});

test('a tampered value, or one moved under another key, is dropped as corrupt', async () => {
  const [k, v] = (await raw.iterator({ gte: 'r!', lt: 'r"' }).all())[0] as [string, Uint8Array];
  const flipped = Uint8Array.from(v);
  flipped[20] = (flipped[20] as number) ^ 1;
  await raw.put(k, flipped);
  await raw.put('r!devices/d/other', v); // a valid sealed value under another name
  const logger = new MemoryLogger();
  const p = await DurablePersistence.open({ db: new SealedJournalDb(db, sealer), logger });
  assert.is(p.stats().corrupt, 2);
  const dropped = logger.lines.filter((l) => l.msg === 'broker journal entry dropped');
  assert.equal(
    dropped.map((l) => l.fields.code),
    ['ERR_MQTT_JOURNAL_CORRUPT', 'ERR_MQTT_JOURNAL_CORRUPT'],
  );
  await p.flushed();
  assert.is((await raw.keys({ gte: 'r!', lt: 'r"' }).all()).length, 0, 'deleted');
});

test('a journal written before sealing is read, then written back sealed', async () => {
  const old = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
  await old.put('s!legacy', encode([{ topic: 'devices/+/t', qos: 1 }]));
  const p = await DurablePersistence.open({
    db: new SealedJournalDb(old as unknown as JournalDb, sealer),
    logger: new MemoryLogger(),
  });
  assert.is(p.stats().sessions, 1, 'the plain session was restored');
  const v = (await old.get('s!legacy')) as Uint8Array;
  assert.is(v[0], 0x01, 'and is sealed now');
  assert.ok(sealer.open('s!legacy', v));
});

test.after(() => raw.close());
test.run();
