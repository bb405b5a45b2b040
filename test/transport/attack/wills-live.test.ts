/**
 * Wills of live sessions (issue 15 item 1): a revoked device's will is dropped, not published when
 * the revocation closes its socket (by ID or by certificate serial), while an ordinary dropped
 * connection still publishes its will; a will aedes hands to the publish hook without a known
 * owner is refused with a typed code.
 */
import type { Client, PublishPacket } from 'aedes';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { StaticRevocationSource } from '../../../runtime/sources/static.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { authorizePublishByPolicy } from '../../../transport/mqtt/hooks.ts';
import { DEFAULT_LIMITS } from '../../../transport/mqtt/limits.ts';
import { PolicyHolder } from '../../../transport/mqtt/policy-holder.ts';
import { Refusals } from '../../../transport/mqtt/refusals.ts';
import { RetainedGuard } from '../../../transport/mqtt/retained.ts';
import { Sessions } from '../../../transport/mqtt/sessions.ts';
import { WILL_OWNER, WillGate } from '../../../transport/mqtt/wills.ts';
import { DEFAULT_POLICY } from '../../../transport/policy/default.ts';
import { closed, rig } from '../setup.ts';

const r = await rig({
  policy: {
    version: 1,
    rules: [...DEFAULT_POLICY.rules, { match: '{self}/device/watcher', subscribe: ['devices/+/status'] }],
  },
});
const watcher = await r.connect(await r.pki.device('watcher'));
const seen: string[] = [];
watcher.on('message', (t, p) => seen.push(`${t}=${p.toString()}`));
await watcher.subscribeAsync('devices/+/status', { qos: 1 });

/** Publishes a sentinel through the watcher and resolves once it came back. */
async function sentinel(tag: string): Promise<void> {
  const back = new Promise<void>((resolve) =>
    watcher.on('message', (t, p) => {
      if (t === 'devices/watcher/status' && p.toString() === tag) resolve();
    }),
  );
  await watcher.publishAsync('devices/watcher/status', tag, { qos: 1 });
  await back;
}

const will = (topic: string) => ({
  will: { topic, payload: Buffer.from('gone'), qos: 1 as const, retain: false },
});

test('a connection that drops publishes its will (the control)', async () => {
  const dev = await r.pki.device('plain');
  const c = await r.connect(dev, will('devices/plain/status'));
  const arrived = new Promise<void>((resolve) =>
    watcher.on('message', (t) => {
      if (t === 'devices/plain/status') resolve();
    }),
  );
  c.stream.destroy();
  await arrived;
  assert.ok(seen.includes('devices/plain/status=gone'));
});

for (const by of ['id', 'serial'] as const) {
  test(`a device revoked by ${by} loses its will with its session`, async () => {
    const dev = await r.pki.device(`revoked-${by}`);
    const c = await r.connect(dev, will(`devices/revoked-${by}/status`));
    const gone = closed(c);
    if (by === 'id') r.revocations.revoke({ spiffeIds: [dev.id] });
    else r.revocations.revoke({ serials: [dev.cert.serialNumber.toLowerCase().replace(/^0+/, '')] });
    await gone;
    await sentinel(`after-${by}`);
    assert.not.ok(
      seen.some((s) => s.startsWith(`devices/revoked-${by}/status`)),
      `no will of the revoked device: ${seen.join()}`,
    );
  });
}

test('the publish hook refuses a will without a known owner, and one of a revoked owner', async () => {
  const logger = new MemoryLogger();
  const refusals = new Refusals(logger);
  const policy = await PolicyHolder.load(DEFAULT_POLICY, logger);
  const revocation = new StaticRevocationSource();
  const gate = new WillGate({
    policy,
    self: () => r.pki.gateway.id,
    revocation,
    topics: { maxTopicLevels: 32, maxTopicBytes: 1024 },
  });
  const dropped: string[] = [];
  const hook = authorizePublishByPolicy(new Sessions(new VirtualClock(0), logger), refusals, {
    gate,
    retained: new RetainedGuard(DEFAULT_LIMITS, logger),
    topics: { maxTopicLevels: 32, maxTopicBytes: 1024 },
    drop: (w) => dropped.push(w.topic),
  });
  const owner = `${r.pki.gateway.id}/device/s1`;
  const judge = (packet: object, client: Client | null = null) =>
    new Promise<string | undefined>((resolve) =>
      hook(client, packet as PublishPacket, (err) => resolve((err as { code?: string } | null)?.code)),
    );
  const base = { cmd: 'publish', qos: 1, retain: false, dup: false, payload: Buffer.from('x') };
  assert.is(await judge({ ...base, topic: 'devices/s1/status' }), 'ERR_MQTT_WILL_DENIED', 'no owner');
  assert.is(await judge({ ...base, topic: 'devices/s1/status', [WILL_OWNER]: owner }), undefined, 'owned');
  assert.is(
    await judge({ ...base, topic: '$edgeward/bundle', [WILL_OWNER]: owner }),
    'ERR_MQTT_RESERVED_TOPIC',
  );
  revocation.revoke({ spiffeIds: [owner] });
  assert.is(
    await judge({ ...base, topic: 'devices/s1/status', [WILL_OWNER]: owner }),
    'ERR_MQTT_WILL_DENIED',
    'revoked owner',
  );
  assert.equal(dropped, ['devices/s1/status', '$edgeward/bundle', 'devices/s1/status']);
  assert.is(refusals.counts().ERR_MQTT_WILL_DENIED, 2);
});

test.after(() => r.close());
test.run();
