/**
 * Session takeover (issue 15 item 6): with `clientId: any`, a client id is taken over only by the
 * same SPIFFE identity, whether its session is live or persistent (offline); another identity is
 * refused with CONNACK 2 and ERR_MQTT_SESSION_TAKEOVER, and the owner keeps its session.
 */
import { MemoryLevel } from 'memory-level';
import mqtt from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startBroker } from '../../../transport/mqtt/broker.ts';
import type { JournalDb } from '../../../transport/mqtt/persistence/journal.ts';
import { connectFailure, nextMessage, rig } from '../setup.ts';

const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
const journal = db.sublevel<string, Uint8Array>('mqtt', { keyEncoding: 'utf8', valueEncoding: 'view' });
const r = await rig({
  persistence: { db: journal as unknown as JournalDb },
  policy: {
    version: 1,
    rules: [
      {
        match: '{self}/device/*',
        clientId: 'any',
        maxConnections: 2,
        publish: ['shared/#'],
        subscribe: ['shared/#'],
      },
    ],
  },
});
const alice = await r.pki.device('alice');
const mallory = await r.pki.device('mallory');

test('a live session is not taken over by another identity', async () => {
  const a = await r.connect(alice, { clientId: 'pump-1', clean: false });
  await a.subscribeAsync('shared/pump', { qos: 1 });
  assert.is(await connectFailure(r.port, mallory, r.pki.bundlePem, { clientId: 'pump-1' }), 2);
  assert.is(r.broker.refusals().ERR_MQTT_SESSION_TAKEOVER, 1);
  // Alice's session is intact: a message reaches her.
  const got = nextMessage(a, 'shared/pump');
  const m = await r.connect(mallory, { clientId: 'm-1' });
  await m.publishAsync('shared/pump', 'on', { qos: 1 });
  assert.is((await got).toString(), 'on');
  await m.endAsync();
  await a.endAsync();
});

test('a persistent session (owner offline) is not inherited by another identity; its owner resumes it', async () => {
  // pump-1 is persistent and offline now, with a subscription; a message is queued for it.
  const m = await r.connect(mallory, { clientId: 'm-2' });
  await m.publishAsync('shared/pump', 'queued', { qos: 1 });
  await m.endAsync();
  assert.is(await connectFailure(r.port, mallory, r.pki.bundlePem, { clientId: 'pump-1', clean: false }), 2);
  assert.is(r.broker.refusals().ERR_MQTT_SESSION_TAKEOVER, 2);
  const a = mqtt.connect(`mqtts://127.0.0.1:${r.port}`, {
    key: alice.pem.key,
    cert: alice.pem.cert,
    ca: r.pki.bundlePem,
    clientId: 'pump-1',
    clean: false,
    reconnectPeriod: 0,
  });
  const got = nextMessage(a, 'shared/pump');
  assert.is((await got).toString(), 'queued', 'the queued message waited for its owner');
  await a.endAsync();
});

test('after a restart on the same journal, the persistent session is still its owner’s', async () => {
  await r.broker.close();
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
    policy: {
      version: 1,
      rules: [
        {
          match: '{self}/device/*',
          clientId: 'any',
          maxConnections: 2,
          publish: ['shared/#'],
          subscribe: ['shared/#'],
        },
      ],
    },
    persistence: { db: journal as unknown as JournalDb },
  });
  try {
    const port = again.addresses.mqtt.port;
    assert.is(await connectFailure(port, mallory, r.pki.bundlePem, { clientId: 'pump-1', clean: false }), 2);
    assert.is(again.refusals().ERR_MQTT_SESSION_TAKEOVER, 1);
    assert.is(
      await connectFailure(port, alice, r.pki.bundlePem, { clientId: 'pump-1', clean: false }),
      'connected',
    );
  } finally {
    await again.close();
  }
});

test.after(() => db.close());
test.run();
