/**
 * The device SDK against the real broker: enroll on first start, load on the next, rotate at
 * half-life (virtual clock) over MQTT renewal, and not lose a single QoS 1 message across the
 * reconnect with the new certificate.
 */
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectDevice } from '../../transport/device/index.ts';
import { makeCert, writeIdentityFiles } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';
import { connectFailure, rig } from './setup.ts';

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
  const token = await r.joinToken('sdk-1', 60_000);
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

test('a CA rotation: bundle.pem is rewritten and the next reconnect trusts the new root', async () => {
  const caDir = join(r.tmp, 'sdk-ca');
  mkdirSync(caDir, { recursive: true });
  const dev = await r.pki.device('ca-rot');
  writeIdentityFiles(caDir, dev, r.pki.bundlePem);
  const device = await connectDevice({
    dir: caDir,
    gateway: { host: '127.0.0.1', port: r.port },
    clock: r.clock,
  });

  // The trust domain rotates its CA: a new root joins the bundle (sequence 2), then the gateway
  // serves a certificate signed by the new root.
  const now = r.clock.now();
  // OpenSSL checks validity against the real clock; the virtual one ran ahead in the test above.
  const notBefore = Math.min(now, Date.now()) - 60_000;
  const root2 = await makeCert({
    subject: `CN=${r.pki.trustDomain} root 2`,
    uris: [`spiffe://${r.pki.trustDomain}`],
    ca: true,
    notBefore,
    notAfter: now + 365 * 24 * 3600_000,
  });
  const gw2 = await makeCert({
    subject: 'CN=gw-1',
    uris: [r.pki.gateway.id],
    dns: ['localhost'],
    ips: ['127.0.0.1'],
    notBefore,
    notAfter: now + 24 * 3600_000,
    issuer: root2,
  });
  const oldBundle = r.pki.bundle;
  const updated = once(device, 'bundleUpdated');
  r.bundles.set({ trustDomain: r.pki.trustDomain, roots: [r.pki.root.cert, root2.cert], sequence: 2 });
  assert.equal(await updated, [2]);
  const pem = readFileSync(join(caDir, 'bundle.pem'), 'utf8');
  const roots = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  assert.equal(
    roots.map((b) => new X509Certificate(b).fingerprint256),
    [r.pki.root.cert.fingerprint256, root2.cert.fingerprint256],
  );
  assert.is(statSync(join(caDir, 'bundle.pem')).mode & 0o777, 0o644);

  r.svids.set({
    spiffeId: r.pki.gateway.id,
    chain: [gw2.cert],
    privateKey: gw2.key,
    notAfter: now + 24 * 3600_000,
  });
  // A device still holding the old bundle cannot reach the gateway any more...
  assert.is.not(await connectFailure(r.port, dev, r.pki.bundlePem), 'connected');
  // ...the SDK's next reconnect uses the rewritten bundle.
  const reconnected = new Promise<void>((resolve, reject) => {
    device.client.once('connect', () => resolve());
    device.client.once('error', reject); // the gateway's new certificate would not verify
  });
  device.client.stream.destroy();
  await reconnected;
  await device.client.publishAsync('devices/ca-rot/after', 'ok', { qos: 1 });
  await device.close();
  // A restart loads the new bundle from disk.
  const again = await connectDevice({
    dir: caDir,
    gateway: { host: '127.0.0.1', port: r.port },
    clock: r.clock,
  });
  assert.ok(again.client.connected);
  await again.close();

  r.svids.set(r.pki.gateway.svid);
  r.bundles.set(oldBundle);
});

test.after(() => r.close());
test.run();
