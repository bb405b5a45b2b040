/**
 * The broker's persistence on the clean-session hot path, side by side in one run: per QoS 1
 * message aedes 1.2 asks its persistence `subscriptionsByTopic` and `outgoingEnqueueCombi`, and
 * with the journal `guardPublish` asks `subscriptionsByTopic` once more before the PUBACK. Clean
 * sessions store no subscription, so nothing is journaled; this measures what the durable layer
 * adds in CPU per message over aedes' in-memory persistence (the naive default), and, for
 * reference, the cost per message when a persistent subscriber makes every message durable.
 * Run: `npm run bench persistence`.
 */
import { randomBytes } from 'node:crypto';
import memory from 'aedes-persistence';
import { MemoryLevel } from 'memory-level';
import { cryptoRandom } from '../runtime/core/random.ts';
import { openValue, sealValue } from '../runtime/store/value-crypto.ts';
import type { StoredPacket } from '../transport/mqtt/persistence/codec.ts';
import { DurablePersistence } from '../transport/mqtt/persistence/durable.ts';
import { guardPublish } from '../transport/mqtt/persistence/guard-publish.ts';
import type { JournalDb } from '../transport/mqtt/persistence/journal.ts';
import { SealedJournalDb } from '../transport/mqtt/persistence/sealed-db.ts';

type P = {
  subscriptionsByTopic(t: string): Promise<{ clientId: string }[]>;
  outgoingEnqueueCombi(s: { clientId: string }[], p: StoredPacket): Promise<void>;
  outgoingClearMessageId(c: { id: string }, p: { messageId?: number }): Promise<unknown>;
  outgoingUpdate(c: { id: string }, p: StoredPacket): Promise<void>;
  addSubscriptions(c: { id: string; clean: boolean }, s: unknown[]): Promise<void>;
  setup(b: unknown): Promise<void>;
};

const N = 100_000;
const packet = (i: number): StoredPacket => ({
  cmd: 'publish',
  topic: 'devices/d1/t',
  payload: Buffer.from(`message ${i}`),
  qos: 1,
  retain: false,
  dup: false,
  brokerId: 'bench',
  brokerCounter: i,
});

async function perMessage(p: P, guarded: boolean, n: number, deliver: boolean): Promise<number> {
  const guard = guarded
    ? guardPublish(p as unknown as DurablePersistence, (_c, _p, done) => done(null))
    : undefined;
  const t0 = process.cpuUsage();
  for (let i = 1; i <= n; i++) {
    const pk = packet(i);
    if (guard) await new Promise<void>((r) => guard(null, pk, () => r()));
    await p.outgoingEnqueueCombi(await p.subscriptionsByTopic(pk.topic), pk);
    if (deliver) {
      await p.outgoingUpdate({ id: 'collector' }, { ...pk, messageId: (i % 65535) + 1 });
      await p.outgoingClearMessageId({ id: 'collector' }, { messageId: (i % 65535) + 1 });
    }
  }
  const u = process.cpuUsage(t0);
  return (u.user + u.system) / n;
}

export default async function run(): Promise<void> {
  const broker = { id: 'bench', counter: 0 };
  const rounds: { mem: number; dur: number }[] = [];
  for (let r = 0; r < 3; r++) {
    const mem = (memory as unknown as () => P)();
    await mem.setup(broker);
    const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
    const dur = (await DurablePersistence.open({ db: db as unknown as JournalDb })) as unknown as P;
    await dur.setup(broker);
    rounds.push({ mem: await perMessage(mem, false, N, false), dur: await perMessage(dur, true, N, false) });
    await db.close();
  }
  const med = (xs: number[]) => xs.sort((a, b) => a - b)[1] as number;
  const mem = med(rounds.map((r) => r.mem));
  const dur = med(rounds.map((r) => r.dur));
  console.log('measure (clean sessions, per QoS 1 message)   memory  durable  ratio');
  console.log(
    `persistence CPU per message (us)              ${mem.toFixed(2).padStart(6)}  ${dur.toFixed(2).padStart(7)}  ${(dur / mem).toFixed(2)}x`,
  );

  // Reference: one persistent subscriber, so every message is logged ahead, queued, then cleared.
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
  const dur2 = (await DurablePersistence.open({ db: db as unknown as JournalDb })) as unknown as P;
  await dur2.setup(broker);
  await dur2.addSubscriptions({ id: 'collector', clean: false }, [{ topic: 'devices/+/t', qos: 1 }]);
  const mem2 = (memory as unknown as () => P)();
  await mem2.setup(broker);
  await mem2.addSubscriptions({ id: 'collector', clean: false }, [{ topic: 'devices/+/t', qos: 1 }]);
  const m2 = await perMessage(mem2, false, N / 10, true);
  const d2 = await perMessage(dur2, true, N / 10, true);
  console.log(
    `with a persistent subscriber (us, sequential)  ${m2.toFixed(2).padStart(6)}  ${d2.toFixed(2).padStart(7)}  ${(d2 / m2).toFixed(2)}x  (memory-level; one journal batch per message here)`,
  );
  await db.close();

  // The same with the journal sealed as the agent opens it (SealedJournalDb: AES-256-GCM per value).
  const key = randomBytes(32);
  const sdb = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
  const sealed = new SealedJournalDb(sdb as unknown as JournalDb, {
    seal: (name, v) => sealValue(key, `mqtt/${name}`, v, cryptoRandom),
    open: (name, v) => openValue(key, `mqtt/${name}`, v),
  });
  const dur3 = (await DurablePersistence.open({ db: sealed })) as unknown as P;
  await dur3.setup(broker);
  await dur3.addSubscriptions({ id: 'collector', clean: false }, [{ topic: 'devices/+/t', qos: 1 }]);
  const d3 = await perMessage(dur3, true, N / 10, true);
  console.log(
    `the same, journal sealed (us, sequential)      ${m2.toFixed(2).padStart(6)}  ${d3.toFixed(2).padStart(7)}  ${(d3 / m2).toFixed(2)}x  (sealed/plain journal: ${(d3 / d2).toFixed(2)}x)`,
  );
  await sdb.close();
}
