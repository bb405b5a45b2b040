/**
 * The device SDK against the real broker: enroll on first start, load on the next, rotate at
 * `refreshAt` (virtual clock) over MQTT renewal without losing a single QoS 1 message across the
 * reconnect with the new certificate; reconnect with capped full-jitter backoff; never with an
 * expired certificate (re-enroll with a factory certificate, or one typed lock-out); the gateway
 * authorized by its exact SPIFFE ID; bundle updates adopted only when the gateway signed them.
 * Network faults come from a real TCP proxy (sim/fleet/tcp-proxy.ts) between device and broker.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cryptoRandom } from '../../runtime/core/random.ts';
import { OID_CLIENT_AUTH, OID_SERVER_AUTH } from '../../runtime/spiffe/cert-facts.ts';
import { TcpProxy } from '../../sim/fleet/tcp-proxy.ts';
import { connectDevice, type Device } from '../../transport/device/index.ts';
import { bundleMessage } from '../../transport/mqtt/renewal.ts';
import { encodeCbor } from '../../transport/mqtt/reserved.ts';
import { makeCert, writeIdentityFiles } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';
import { connectFailure, rig } from './setup.ts';

const mfg = await makeCert({
  subject: 'CN=ACME devices root',
  ca: true,
  notBefore: Date.now() - 3600_000,
  notAfter: Date.now() + 7 * 86400_000,
});
const r = await rig({
  policy: {
    version: 1,
    rules: [
      { match: '{self}/device/*', publish: ['devices/{device}/#'], subscribe: ['devices/{device}/#'] },
      { match: '{self}/svc/*', subscribe: ['devices/+/#'] },
    ],
  },
  factory: { roots: [mfg.cert], idField: 'cn', allowList: ['fac-1'] },
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

/** Resolves when `n` distinct payloads have arrived at `client` (event-driven, no polling). */
function received(client: mqtt.MqttClient, n: number): { seen: Set<string>; all: Promise<void> } {
  const seen = new Set<string>();
  const all = new Promise<void>((resolve) =>
    client.on('message', (_t, p) => {
      seen.add(p.toString());
      if (seen.size === n) resolve();
    }),
  );
  return { seen, all };
}

test('enroll over EST, then rotate at refreshAt over EST with zero lost QoS 1 messages; MQTT renewal without an enrollment listener', async () => {
  const token = await r.joinToken('sdk-1', 60_000);
  const device = await connectDevice({
    dir,
    gateway: { host: '127.0.0.1', port: r.port },
    enroll: { host: '127.0.0.1', port: enrollAt.port, deviceId: 'sdk-1', token },
    clock: r.clock,
    // float() = 0.5: refreshAt is exactly the half-life (the jitter is ± 10 % of it otherwise).
    random: { bytes: cryptoRandom.bytes, float: () => 0.5 },
  });
  assert.is(device.spiffeId, `${r.pki.gateway.id}/device/sdk-1`);
  assert.is(device.gatewayId, r.pki.gateway.id);
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
  const N = 300;
  const got = received(collector, N);

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
      // refreshAt (from the certificate itself) passes while messages are in flight; the renewal
      // answer's 30 s timeout lies beyond this step.
      const { notBefore } = device.identity;
      await r.clock.advance(notBefore + (device.notAfter - notBefore) / 2 - r.clock.now() + 1000);
    }
  }
  const newNotAfter = await rotated;
  await Promise.all(acks);
  await got.all;
  assert.is(got.seen.size, N, `received ${got.seen.size} of ${N} distinct messages`);
  assert.ok(newNotAfter > firstNotAfter, 'the new SVID lives longer');
  const secondSerial = new X509Certificate(readFileSync(join(dir, 'svid.pem'))).serialNumber;
  assert.is.not(secondSerial, firstSerial, 'svid.pem holds the new certificate');
  assert.ok(
    r.logger.lines.some(
      (l) =>
        l.msg === 'device enrolled' &&
        l.fields.method === 'reenroll' &&
        String(l.fields.spiffeId).endsWith('/sdk-1'),
    ),
    'the gateway signed the rotation over EST (simplereenroll)',
  );
  assert.not.ok(
    r.logger.lines.some((l) => l.msg === 'device SVID renewed' && l.fields.deviceId === 'sdk-1'),
    'not over MQTT',
  );
  await device.close();
  await collector.endAsync();
  await rejects(() => device.rotate(), 'ERR_DEVICE_CLOSED');

  // The next start loads the stored identity without enrolling.
  const again = await connectDevice({ dir, gateway: { host: '127.0.0.1', port: r.port }, clock: r.clock });
  assert.is(again.notAfter, newNotAfter);
  // Without an enrollment listener (an MQTT-only device) the rotation goes over MQTT renewal,
  // to the same signer.
  await r.clock.advance(60_000);
  await again.rotate();
  assert.ok(again.notAfter > newNotAfter);
  assert.ok(
    r.logger.lines.some((l) => l.msg === 'device SVID renewed' && l.fields.deviceId === 'sdk-1'),
    'the broker signed the renewal over MQTT',
  );
  await again.close();
});

test('renewal answers are refused for a malformed request, and a signed bundle is retained on $edgeward/bundle', async () => {
  const dev = await r.pki.device('raw-1');
  const c = await r.connect(dev);
  const bundle = new Promise<Buffer>((resolve) =>
    c.on('message', (t, p) => t === '$edgeward/bundle' && resolve(p)),
  );
  const replies: { id: string; error?: { code: string } }[] = [];
  const { decode, encode } = await import('cbor-x');
  let onReply: () => void = () => undefined;
  c.on('message', (t, p) => {
    if (t !== '$edgeward/reply/raw-1') return;
    replies.push(decode(p));
    onReply();
  });
  const nextReply = (): Promise<void> => new Promise((resolve) => (onReply = resolve));
  await c.subscribeAsync(['$edgeward/bundle', '$edgeward/reply/raw-1'], { qos: 1 });
  const b = decode(await bundle) as { trustDomain: string; roots: Uint8Array[]; signer: Uint8Array[] };
  assert.is(b.trustDomain, r.pki.trustDomain);
  assert.ok(Buffer.from(b.roots[0] as Uint8Array).equals(r.pki.root.cert.raw));
  assert.ok(
    Buffer.from(b.signer[0] as Uint8Array).equals(r.pki.gateway.cert.raw),
    'signed by the served certificate',
  );
  let answered = nextReply();
  await c.publishAsync('$edgeward/renew/raw-1', encode({ id: 'c1', csr: new Uint8Array([1, 2, 3]) }), {
    qos: 1,
  });
  await answered;
  // Garbage on the renewal topic is dropped without an answer and the session lives on: the
  // next reply is the sentinel's, on the same connection.
  await c.publishAsync('$edgeward/renew/raw-1', Buffer.from([0xff, 0x00]), { qos: 1 });
  answered = nextReply();
  await c.publishAsync('$edgeward/renew/raw-1', encode({ id: 'sentinel', csr: new Uint8Array([4]) }), {
    qos: 1,
  });
  await answered;
  assert.equal(
    replies.map((x) => [x.id, x.error?.code]),
    [
      ['c1', 'ERR_DEVICE_CSR_INVALID'],
      ['sentinel', 'ERR_DEVICE_CSR_INVALID'],
    ],
  );
  await c.endAsync();
});

test('the gateway is authorized by its exact SPIFFE ID: another gateway of the trust domain is refused', async () => {
  const caDir = join(r.tmp, 'sdk-authz');
  mkdirSync(caDir, { recursive: true });
  const dev = await r.pki.device('authz');
  writeIdentityFiles(caDir, dev, r.pki.bundlePem);
  const now = r.clock.now();
  const gw2 = await makeCert({
    subject: 'CN=gw-2',
    uris: [`spiffe://${r.pki.trustDomain}/gateway/gw-2`],
    dns: ['localhost'],
    ips: ['127.0.0.1'],
    notBefore: Math.min(now, Date.now()) - 60_000,
    notAfter: now + 24 * 3600_000,
    issuer: r.pki.root,
  });
  r.svids.set({
    spiffeId: `spiffe://${r.pki.trustDomain}/gateway/gw-2`,
    chain: [gw2.cert],
    privateKey: gw2.key,
    notAfter: now + 24 * 3600_000,
  });
  try {
    const err = await rejects<Error>(
      () => connectDevice({ dir: caDir, gateway: { host: '127.0.0.1', port: r.port }, clock: r.clock }),
      'ERR_DEVICE_GATEWAY_UNAUTHORIZED',
    );
    assert.match(err.message, /gateway\/gw-2, not .*gateway\/gw-1/);
  } finally {
    r.svids.set(r.pki.gateway.svid);
  }
  // The real gateway passes.
  const device = await connectDevice({
    dir: caDir,
    gateway: { host: '127.0.0.1', port: r.port },
    clock: r.clock,
  });
  assert.is(device.state, 'connected');
  await device.close();
});

test('the gateway local server certificate (under its delegated CA, URI SAN = its own ID) is accepted, and signs the bundle', async () => {
  const lsDir = join(r.tmp, 'sdk-local-server');
  mkdirSync(lsDir, { recursive: true });
  const dev = await r.pki.device('local-srv');
  writeIdentityFiles(lsDir, dev, r.pki.bundlePem);
  const local = await r.pki.underCa();
  const withClientAuth = await r.pki.underCa({ eku: [OID_SERVER_AUTH, OID_CLIENT_AUTH] });
  const otherGw = await r.pki.underCa({ id: r.pki.otherCa.id, by: r.pki.otherCa });
  try {
    r.svids.set(local.svid);
    const device = await connectDevice({
      dir: lsDir,
      gateway: { host: '127.0.0.1', port: r.port },
      clock: r.clock,
    });
    assert.is(device.state, 'connected');
    // A bundle update signed with the local server key (chain: leaf, delegated CA) is adopted.
    const root3 = await makeCert({
      subject: 'CN=root 3',
      uris: [`spiffe://${r.pki.trustDomain}`],
      ca: true,
      notBefore: Math.min(r.clock.now(), Date.now()) - 60_000,
      notAfter: r.clock.now() + 3600_000,
    });
    const oldBundle = r.pki.bundle;
    const updated = once(device, 'bundleUpdated');
    r.bundles.set({ trustDomain: r.pki.trustDomain, roots: [r.pki.root.cert, root3.cert], sequence: 11 });
    assert.equal(await updated, [11]);
    await device.close();
    r.bundles.set(oldBundle);
    // The same ID with clientAuth too, or another gateway's server identity: refused by code.
    for (const bad of [withClientAuth, otherGw]) {
      r.svids.set(bad.svid);
      await rejects(
        () => connectDevice({ dir: lsDir, gateway: { host: '127.0.0.1', port: r.port }, clock: r.clock }),
        'ERR_DEVICE_GATEWAY_UNAUTHORIZED',
      );
    }
  } finally {
    r.svids.set(r.pki.gateway.svid);
  }
});

test('reconnect: full-jitter backoff, capped; never with an expired certificate; one typed lock-out', async () => {
  const proxy = await TcpProxy.start(() => ({ host: '127.0.0.1', port: r.port }), r.clock);
  const devDir = join(r.tmp, 'sdk-expire');
  mkdirSync(devDir, { recursive: true });
  const now = r.clock.now();
  const dev = await r.pki.device('expire-1', {
    notBefore: Math.min(now, Date.now()) - 60_000,
    notAfter: now + 3600_000,
  });
  writeIdentityFiles(devDir, dev, r.pki.bundlePem);
  // float() = 0.999: each delay is just under its ceiling min(cap, 1000·2ⁿ).
  const random = { bytes: cryptoRandom.bytes, float: () => 0.999 };
  const device = await connectDevice({
    dir: devDir,
    gateway: { host: '127.0.0.1', port: proxy.port },
    clock: r.clock,
    random,
    reconnect: { initialMs: 1000, factor: 2, capMs: 4000 },
  });
  const delays: number[] = [];
  const scheduled = (): Promise<number> =>
    new Promise((resolve) => device.once('reconnectScheduled', (d) => resolve(d)));
  let next = scheduled();
  proxy.set({ kind: 'refuse' });
  for (let i = 0; i < 5; i++) {
    const d = await next;
    delays.push(d);
    next = scheduled();
    await r.clock.advance(d);
  }
  assert.equal(delays, [999, 1998, 3996, 3996, 3996]);

  // Powered off past NotAfter: the clock jumps; the device comes back to a reachable gateway.
  const before = proxy.connections;
  r.clock.set(device.notAfter + 1000);
  proxy.set({ kind: 'pass' });
  const lockedOut = new Promise<{ code: string }>((resolve) => device.once('lockedOut', resolve));
  await r.clock.advance(await next);
  const err = await lockedOut;
  assert.is(err.code, 'ERR_DEVICE_SVID_EXPIRED');
  assert.is(device.state, 'lockedOut');
  assert.is(proxy.connections, before, 'no connection was attempted with the expired certificate');
  assert.ok(
    !r.clock.pendingTimers().some((t) => t.name === 'device-reconnect' || t.name === 'device-rotate'),
    'it stops retrying',
  );
  await rejects(() => device.rotate(), 'ERR_DEVICE_CLOSED');
  await device.close();
  // A restart with the expired identity and nothing to enroll with: the same typed error.
  await rejects(
    () => connectDevice({ dir: devDir, gateway: { host: '127.0.0.1', port: r.port }, clock: r.clock }),
    'ERR_DEVICE_SVID_EXPIRED',
  );
  await proxy.close();
});

test('an SVID expired while powered off: the device re-enrolls by itself with its factory certificate', async () => {
  const proxy = await TcpProxy.start(() => ({ host: '127.0.0.1', port: r.port }), r.clock);
  const fac = await makeCert({
    subject: 'CN=fac-1',
    notBefore: Date.now() - 3600_000,
    notAfter: Date.now() + 7 * 86400_000,
    issuer: mfg,
    eku: null,
  });
  const factory = {
    cert: fac.cert.toString(),
    key: fac.key,
    bundleFingerprint: createHash('sha256').update(r.pki.root.cert.raw).digest(),
  };
  const device = await connectDevice({
    dir: join(r.tmp, 'sdk-factory'),
    gateway: { host: '127.0.0.1', port: proxy.port },
    enroll: { host: '127.0.0.1', port: enrollAt.port, factory },
    clock: r.clock,
  });
  assert.is(device.spiffeId, `${r.pki.gateway.id}/device/fac-1`);
  const first = device.notAfter;
  const offline = once(device, 'disconnected');
  proxy.set({ kind: 'refuse' });
  await offline;
  r.clock.set(first + 60_000);
  proxy.set({ kind: 'pass' });
  const reenrolled = new Promise<number>((resolve) => device.once('reenrolled', resolve));
  const connected = once(device, 'connected');
  await r.clock.advance(60_000); // the pending reconnect attempt (at most the 60 s cap)
  const notAfter = await reenrolled;
  await connected;
  assert.ok(notAfter > r.clock.now(), 'a fresh SVID');
  assert.is(device.notAfter, notAfter);
  await device.client.publishAsync('devices/fac-1/after', 'ok', { qos: 1 });
  await device.close();
  await proxy.close();
});

test('a forged bundle (its own CA, the highest sequence) is refused by code and blocks no real bundle', async () => {
  const fDir = join(r.tmp, 'sdk-forged');
  mkdirSync(fDir, { recursive: true });
  const dev = await r.pki.device('forged-1');
  writeIdentityFiles(fDir, dev, r.pki.bundlePem);
  const device: Device = await connectDevice({
    dir: fDir,
    gateway: { host: '127.0.0.1', port: r.port },
    clock: r.clock,
  });
  const now = Math.min(r.clock.now(), Date.now());
  const evilRoot = await makeCert({
    subject: 'CN=evil',
    uris: [`spiffe://${r.pki.trustDomain}`],
    ca: true,
    notBefore: now - 60_000,
    notAfter: now + 3600_000,
  });
  const evilGw = await makeCert({
    subject: 'CN=gw-1',
    uris: [r.pki.gateway.id],
    notBefore: now - 60_000,
    notAfter: r.clock.now() + 3600_000,
    issuer: evilRoot,
  });
  const forged = encodeCbor(
    bundleMessage(
      {
        trustDomain: r.pki.trustDomain,
        roots: [r.pki.root.cert, evilRoot.cert],
        sequence: Number.MAX_SAFE_INTEGER,
      },
      { privateKey: evilGw.key, chain: [evilGw.cert, evilRoot.cert] },
    ),
  );
  const rejected = new Promise<{ code: string }>((resolve) => device.once('bundleRejected', resolve));
  // As the client would get it from the topic (how it got there is the broker's side, issue 15).
  device.client.emit('message', '$edgeward/bundle', forged, {
    cmd: 'publish',
    topic: '$edgeward/bundle',
    payload: forged,
    qos: 1,
    dup: false,
    retain: true,
  });
  assert.is((await rejected).code, 'ERR_DEVICE_BUNDLE_UNAUTHENTICATED');
  assert.is(readFileSync(join(fDir, 'bundle.pem'), 'utf8'), r.pki.bundlePem, 'bundle.pem untouched');
  // The gateway's real update (a lower sequence than the forgery's) is adopted.
  const root2 = await makeCert({
    subject: 'CN=root 2',
    uris: [`spiffe://${r.pki.trustDomain}`],
    ca: true,
    notBefore: now - 60_000,
    notAfter: r.clock.now() + 3600_000,
  });
  const oldBundle = r.pki.bundle;
  const updated = once(device, 'bundleUpdated');
  r.bundles.set({ trustDomain: r.pki.trustDomain, roots: [r.pki.root.cert, root2.cert], sequence: 5 });
  assert.equal(await updated, [5]);
  await device.close();
  r.bundles.set(oldBundle);
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

  // The trust domain rotates its CA: a new root joins the bundle (sequence 7), then the gateway
  // serves a certificate signed by the new root.
  const now = r.clock.now();
  // OpenSSL checks validity against the real clock; the virtual one ran ahead in the tests above.
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
  r.bundles.set({ trustDomain: r.pki.trustDomain, roots: [r.pki.root.cert, root2.cert], sequence: 7 });
  assert.equal(await updated, [7]);
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
  // A device still holding the old bundle cannot reach the gateway any more (OpenSSL's code)...
  assert.is(await connectFailure(r.port, dev, r.pki.bundlePem), 'SELF_SIGNED_CERT_IN_CHAIN');
  // ...the SDK's next reconnect uses the rewritten bundle.
  const reconnected = once(device, 'connected');
  const scheduled = new Promise<number>((resolve) => device.once('reconnectScheduled', resolve));
  device.client.stream.destroy();
  await r.clock.advance(await scheduled);
  await reconnected;
  await device.client.publishAsync('devices/ca-rot/after', 'ok', { qos: 1 });
  await device.close();
  // A restart loads the new bundle from disk.
  const again = await connectDevice({
    dir: caDir,
    gateway: { host: '127.0.0.1', port: r.port },
    clock: r.clock,
  });
  assert.is(again.state, 'connected');
  await again.close();

  r.svids.set(r.pki.gateway.svid);
  r.bundles.set(oldBundle);
});

test.after(() => r.close());
test.run();
