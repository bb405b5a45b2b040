/**
 * Retained floods (issue 15 item 5): caps per identity and in total, count and bytes, refused with
 * ERR_MQTT_RETAINED_CAP (the connection closes: MQTT 3.1.1 has no PUBLISH refusal) and counted;
 * and a journaled retained store that exceeds the caps at the next start is cut back to them.
 */
import { MemoryLevel } from 'memory-level';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { JournalDb } from '../../../transport/mqtt/persistence/journal.ts';
import { closed, rig } from '../setup.ts';

const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
const journal = db.sublevel<string, Uint8Array>('mqtt', { keyEncoding: 'utf8', valueEncoding: 'view' });
const limits = {
  maxRetainedPerIdentity: 3,
  maxRetainedBytesPerIdentity: 64 * 1024,
  maxRetained: 6,
  maxRetainedBytes: 1024 * 1024,
};
const r = await rig({ limits, persistence: { db: journal as unknown as JournalDb } });

test('per identity: the 4th retained topic is refused, replacing or clearing one is not', async () => {
  const dev = await r.pki.device('f');
  const c = await r.connect(dev);
  for (const t of ['a', 'b', 'c']) await c.publishAsync(`devices/f/${t}`, 'v', { qos: 1, retain: true });
  await c.publishAsync('devices/f/a', 'v2', { qos: 1, retain: true }); // replaces: same count
  await c.publishAsync('devices/f/b', '', { qos: 1, retain: true }); // clears one
  await c.publishAsync('devices/f/d', 'v', { qos: 1, retain: true }); // fits again
  assert.is(r.broker.retainedStats().count, 4, 'bundle + 3');
  const gone = closed(c);
  c.publish('devices/f/e', 'v', { qos: 1, retain: true });
  await gone;
  assert.is(r.broker.refusals().ERR_MQTT_RETAINED_CAP, 1);
  // A plain (not retained) publish is not counted.
  const again = await r.connect(dev);
  await again.publishAsync('devices/f/e', 'v', { qos: 1 });
  await again.endAsync();
});

test('per identity bytes: a flood of large retained messages stops at the byte cap', async () => {
  const c = await r.connect(await r.pki.device('big'));
  const gone = closed(c);
  // 20 × 30 KB in one burst at QoS 0: the 3rd would pass 64 KiB.
  for (let i = 0; i < 20; i++)
    c.publish(`devices/big/${i % 3}`, Buffer.alloc(30 * 1024, i), { qos: 0, retain: true });
  await gone;
  assert.is(r.broker.refusals().ERR_MQTT_RETAINED_CAP, 2);
  assert.ok(
    r.broker.retainedStats().bytes < 1024 + 2 * 31 * 1024 + 4096,
    `${r.broker.retainedStats().bytes}`,
  );
});

test('in total: the broker-wide count cap refuses another identity too', async () => {
  const before = r.broker.retainedStats().count; // bundle + f's 3 + big's 2 = 6
  assert.is(before, 6);
  const c = await r.connect(await r.pki.device('g'));
  const gone = closed(c);
  c.publish('devices/g/x', 'v', { qos: 1, retain: true });
  await gone;
  assert.is(r.broker.refusals().ERR_MQTT_RETAINED_CAP, 3);
  assert.is(r.broker.retainedStats().count, 6);
});

test('after a restart with lower caps, the journaled store is cut back to them', async () => {
  await r.broker.close();
  const { startBroker } = await import('../../../transport/mqtt/broker.ts');
  const again = await startBroker({
    svidSource: r.svids,
    bundleSource: r.bundles,
    revocationSource: r.revocations,
    deviceSigner: r.pki.signer(r.clock),
    tokenStore: r.tokens,
    trustDomain: r.pki.trustDomain,
    clock: r.clock,
    logger: r.logger,
    listen: { host: '127.0.0.1', port: 0 },
    limits: { ...limits, maxRetainedPerIdentity: 1 },
    persistence: { db: journal as unknown as JournalDb },
  });
  try {
    const s = again.retainedStats();
    // f kept 1 of 3, big kept 1 of 2; the bundle is the gateway's.
    assert.is(s.droppedAtStart, 3);
    assert.is(s.count, 3);
    const keys = (await journal.keys().all()).filter((k) => k.startsWith('r!'));
    assert.is(keys.length, 3, keys.join());
  } finally {
    await again.close();
  }
});

test.run();
