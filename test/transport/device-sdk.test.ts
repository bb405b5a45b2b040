/**
 * The device SDK against the real broker: enroll on first start, load on the next, rotate at
 * half-life (virtual clock) over MQTT renewal, and not lose a single QoS 1 message across the
 * reconnect with the new certificate.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { seededRandom } from '../../sim/random.ts';
import { connectDevice } from '../../transport/device/index.ts';
import { issueJoinToken } from '../../transport/enroll/join-token.ts';
import { makeCert } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';
import { rig } from './setup.ts';

const r = await rig({
  policy: {
    version: 1,
    rules: [
      { match: '{self}/device/*', publish: ['devices/{device}/#'], subscribe: ['devices/{device}/#'] },
      { match: '{self}/svc/*', subscribe: ['devices/+/#'] },
    ],
  },
});
const enrollAt = r.broker.addresses.enrollment as { host: string; port: number };
const dir = join(r.tmp, 'sdk');

test('no identity and no token: a typed error', async () => {
  await rejects(
    () =>
      connectDevice({
        dir: join(r.tmp, 'none'),
        gateway: { host: '127.0.0.1', port: r.port },
        clock: r.clock,
      }),
    'ERR_DEVICE_IDENTITY',
  );
});

test('enroll, then rotate at half-life with zero lost QoS 1 messages', async () => {
  const { token } = await issueJoinToken({
    store: r.tokens,
    random: seededRandom('sdk'),
    clock: r.clock,
    bundle: r.pki.bundle,
    deviceId: 'sdk-1',
    ttlMs: 60_000,
  });
  const device = await connectDevice({
    dir,
    gateway: { host: '127.0.0.1', port: r.port },
    enroll: { host: '127.0.0.1', port: enrollAt.port, token },
    clock: r.clock,
  });
  assert.is(device.spiffeId, `${r.pki.gateway.id}/device/sdk-1`);
  const firstSerial = new X509Certificate(readFileSync(join(dir, 'svid.pem'))).serialNumber;
  const firstNotAfter = device.notAfter;

  const svc = await makeCert({
    subject: 'CN=collector',
    uris: [`${r.pki.gateway.id}/svc/collector`],
    notBefore: r.clock.now() - 60_000,
    notAfter: r.clock.now() + 24 * 3600_000,
    issuer: r.pki.root,
  });
  const collector = await mqtt.connectAsync(`mqtts://127.0.0.1:${r.port}`, {
    key: svc.key.export({ type: 'pkcs8', format: 'pem' }) as string,
    cert: svc.cert.toString(),
    ca: r.pki.bundlePem,
    clientId: 'collector',
    reconnectPeriod: 0,
  });
  await collector.subscribeAsync('devices/sdk-1/#', { qos: 1 });
  const seen = new Set<string>();
  collector.on('message', (_t, p) => seen.add(p.toString()));

  const N = 300;
  const acks: Promise<void>[] = [];
  const rotated = new Promise<number>((resolve) => device.once('rotated', resolve));
  for (let i = 0; i < N; i++) {
    acks.push(
      new Promise((resolve, reject) =>
        device.client.publish('devices/sdk-1/seq', String(i), { qos: 1 }, (err) =>
          err ? reject(err) : resolve(),
        ),
      ),
    );
    if (i === N / 3) {
      // Half-life (from the certificate itself) arrives while messages are in flight.
      const leaf = new X509Certificate(readFileSync(join(dir, 'svid.pem')));
      const notBefore = Date.parse(leaf.validFrom);
      await r.clock.advance(notBefore + (device.notAfter - notBefore) / 2 - r.clock.now() + 1000);
    }
    if (i % 10 === 0) await new Promise((res) => setTimeout(res, 2));
  }
  const newNotAfter = await rotated;
  await Promise.all(acks);
  for (let t = 0; seen.size < N && t < 100; t++) await new Promise((res) => setTimeout(res, 50));
  assert.is(seen.size, N, `received ${seen.size} of ${N} distinct messages`);
  assert.ok(newNotAfter > firstNotAfter, 'the new SVID lives longer');
  const secondSerial = new X509Certificate(readFileSync(join(dir, 'svid.pem'))).serialNumber;
  assert.is.not(secondSerial, firstSerial, 'svid.pem holds the new certificate');
  assert.ok(
    r.logger.lines.some((l) => l.msg === 'device SVID renewed' && l.fields.deviceId === 'sdk-1'),
    'the broker signed the renewal',
  );
  await device.close();
  await collector.endAsync();

  // The next start loads the stored identity without enrolling.
  const again = await connectDevice({ dir, gateway: { host: '127.0.0.1', port: r.port }, clock: r.clock });
  assert.is(again.notAfter, newNotAfter);
  await again.close();
});

test('renewal answers are refused for a malformed request, and a bundle is retained on $edgeward/bundle', async () => {
  const dev = await r.pki.device('raw-1');
  const c = await r.connect(dev);
  const bundle = new Promise<Buffer>((resolve) =>
    c.on('message', (t, p) => t === '$edgeward/bundle' && resolve(p)),
  );
  await c.subscribeAsync(['$edgeward/bundle', '$edgeward/reply/raw-1'], { qos: 1 });
  const { decode } = await import('cbor-x');
  const b = decode(await bundle) as { trustDomain: string; roots: Uint8Array[] };
  assert.is(b.trustDomain, r.pki.trustDomain);
  assert.ok(Buffer.from(b.roots[0] as Uint8Array).equals(r.pki.root.cert.raw));
  const { encode } = await import('cbor-x');
  const reply = new Promise<Buffer>((resolve) =>
    c.on('message', (t, p) => t === '$edgeward/reply/raw-1' && resolve(p)),
  );
  await c.publishAsync('$edgeward/renew/raw-1', encode({ id: 'c1', csr: new Uint8Array([1, 2, 3]) }), {
    qos: 1,
  });
  const ans = decode(await reply) as { id: string; error?: { code: string } };
  assert.is(ans.id, 'c1');
  assert.is(ans.error?.code, 'ERR_DEVICE_CSR_INVALID');
  // Garbage on the renewal topic is dropped without an answer and the session lives on.
  await c.publishAsync('$edgeward/renew/raw-1', Buffer.from([0xff, 0x00]), { qos: 1 });
  assert.ok(c.connected);
  await c.endAsync();
});

test.after(() => r.close());
test.run();
