/**
 * Local service hangs on the delegated CA, not on the upstream SVID (issue 14 item 2), with real
 * peers: a broker whose upstream gateway SVID has expired presents the gateway's own server
 * certificate (minted under its delegated CA) on both listeners; mosquitto_pub/sub check the
 * host name against its DNS/IP SANs and the chain to the bundle root; the enrollment client and
 * the device SDK enroll, connect, publish and renew. At the CA's NotAfter (virtual clock) live
 * sessions close, and new connections, enrollment and renewal are refused, exactly then.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { MemoryLevel } from 'memory-level';
import mqtt from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AgentDeviceSigner } from '../../runtime/agent/device-signer.ts';
import { liveIdentity } from '../../runtime/agent/identity.ts';
import { ServerIdentity } from '../../runtime/agent/server-identity.ts';
import { MemoryLogger } from '../../runtime/core/logger.ts';
import {
  StaticBundleSource,
  StaticRevocationSource,
  StaticSvidSource,
} from '../../runtime/sources/static.ts';
import { createCsr } from '../../runtime/svid/csr.ts';
import { VirtualClock } from '../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../sim/random.ts';
import { connectDevice } from '../../transport/device/index.ts';
import { enroll } from '../../transport/enroll/est-client.ts';
import { issueJoinToken } from '../../transport/enroll/join-token.ts';
import { MemoryTokenStore } from '../../transport/enroll/token-store.ts';
import { type BrokerOptions, startBroker } from '../../transport/mqtt/broker.ts';
import { buildPki, makeCert, type TestPki } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';

const run = promisify(execFile);
const MIN = 60_000;
const HOUR = 60 * MIN;
const der = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'der' });
const newKey = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

/** A gateway whose upstream SVID expired a minute ago and whose delegated CA lives `caLifeMs` more. */
async function gateway(
  caLifeMs: number,
  listenHost = '127.0.0.1',
  extra: (pki: TestPki) => Promise<Partial<BrokerOptions>> = async () => ({}),
) {
  const clock = new VirtualClock(Math.floor(Date.now() / 1000) * 1000);
  const now = clock.now();
  const pki = await buildPki({ now, lifetimeMs: caLifeMs });
  const upstreamSvid = await pki.gatewaySvid({ notBefore: now - 2 * HOUR, notAfter: now - MIN });
  const live = liveIdentity({
    spiffeId: pki.gateway.id,
    svidChain: upstreamSvid.chain.map((c) => c.raw),
    svidKey: der(upstreamSvid.key),
    caChain: [pki.deviceCa.cert.raw, pki.root.cert.raw],
    caKey: der(pki.deviceCa.key),
    caKeyBackend: 'software',
    obtainedAt: now - 2 * HOUR,
    via: 'attest',
    nextNonce: new Uint8Array(32),
  });
  const caIdentity = () => (clock.now() < live.ca.notAfter ? live : undefined);
  const logger = new MemoryLogger();
  const signer = new AgentDeviceSigner({
    trustDomain: pki.trustDomain,
    random: seededRandom('local-service'),
    caIdentity,
    clockTrusted: () => true,
    now: () => clock.now(),
    recordDevice: async () => {},
  });
  const server = new ServerIdentity({
    signer,
    caIdentity,
    onIdentityChange: () => () => {},
    clock,
    now: () => clock.now(),
    logger,
  });
  await server.start();
  const tokens = new MemoryTokenStore();
  const upstream = new StaticSvidSource(upstreamSvid.svid, clock);
  const broker = await startBroker({
    svidSource: upstream,
    serverSource: server,
    bundleSource: new StaticBundleSource([pki.bundle]),
    revocationSource: new StaticRevocationSource(),
    deviceSigner: signer,
    tokenStore: tokens,
    trustDomain: pki.trustDomain,
    clock,
    logger,
    listen: { host: listenHost, port: 0 },
    enrollment: { host: '127.0.0.1', port: 0 },
    ...(await extra(pki)),
  });
  const tokenRandom = seededRandom('local-service-tokens');
  const tmp = mkdtempSync(join(tmpdir(), 'edgeward-local-'));
  return {
    clock,
    pki,
    live,
    logger,
    signer,
    server,
    upstream,
    broker,
    tmp,
    port: broker.addresses.mqtt.port,
    enrollPort: (broker.addresses.enrollment as { port: number }).port,
    token: async (deviceId: string) =>
      (
        await issueJoinToken({
          store: tokens,
          random: tokenRandom,
          clock,
          bundle: pki.bundle,
          deviceId,
          ttlMs: 10 * MIN,
        })
      ).token,
    async close() {
      await broker.close();
      server.stop();
    },
  };
}

/** Enroll `deviceId` over the enrollment listener and write mosquitto's three files. */
async function enrolledFiles(g: Awaited<ReturnType<typeof gateway>>, deviceId: string) {
  const key = newKey();
  const got = await enroll({
    host: '127.0.0.1',
    port: g.enrollPort,
    key,
    deviceId,
    token: await g.token(deviceId),
    now: () => g.clock.now(),
  });
  assert.is(got.spiffeId, `${g.pki.gateway.id}/device/${deviceId}`);
  const dir = join(g.tmp, deviceId);
  mkdirSync(dir);
  const files = { cert: join(dir, 'svid.pem'), key: join(dir, 'key.pem'), ca: join(dir, 'bundle.pem') };
  writeFileSync(files.key, key.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(files.cert, got.chainPem);
  writeFileSync(files.ca, got.bundlePem);
  return files;
}

test('upstream SVID expired: both listeners present the server identity; mosquitto clients check host name and chain', async () => {
  // All addresses, so that 127.0.0.2 (loopback, not in the IP SANs) reaches it too.
  const g = await gateway(24 * HOUR, '0.0.0.0');
  await rejects(() => g.upstream.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  // What the listener presents: the gateway ID, serverAuth only, leaf + delegated CA (no root).
  const presented = await new Promise<X509Certificate[]>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: g.enrollPort, rejectUnauthorized: false }, () => {
      const leaf = s.getPeerX509Certificate() as X509Certificate;
      const chain = [leaf];
      const peer = s.getPeerCertificate(true);
      if (peer.issuerCertificate && peer.issuerCertificate !== peer)
        chain.push(new X509Certificate(peer.issuerCertificate.raw));
      s.destroy();
      resolve(chain);
    });
    s.once('error', reject);
  });
  assert.is(presented[0]?.subjectAltName, `URI:${g.pki.gateway.id}, DNS:localhost, IP Address:127.0.0.1`);
  assert.is(presented[0]?.issuer, g.pki.deviceCa.cert.subject);

  const files = await enrolledFiles(g, 'sensor-1');
  const tls = (host: string) => [
    '--cafile',
    files.ca,
    '--cert',
    files.cert,
    '--key',
    files.key,
    '-h',
    host,
    '-p',
    String(g.port),
  ];
  // Retained, so the subscriber started afterwards receives it (no timing assumption).
  await run('mosquitto_pub', [
    ...tls('localhost'),
    '-i',
    'sensor-1',
    '-t',
    'devices/sensor-1/temp',
    '-m',
    'offline-but-local',
    '-r',
    '-q',
    '1',
  ]);
  const sub = await run('mosquitto_sub', [
    ...tls('127.0.0.1'),
    '-i',
    'sensor-1',
    '-t',
    'devices/sensor-1/#',
    '-C',
    '1',
    '-W',
    '10',
    '-q',
    '1',
  ]);
  assert.is(sub.stdout.trim(), 'offline-but-local');
  // A host name the server certificate does not carry is refused by mosquitto's own check.
  const wrongName = await run('mosquitto_pub', [
    ...tls('127.0.0.2'),
    '-i',
    'sensor-1',
    '-t',
    'devices/sensor-1/t',
    '-m',
    'x',
  ]).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code?: number; stderr?: string }) => ({ code: err.code ?? -1, stderr: err.stderr ?? '' }),
  );
  // Same broker, same files, same loopback: only the name checked differs, and the TLS check fails.
  assert.match(wrongName.stderr, /TLS error|certificate verify failed/i, wrongName.stderr);
  assert.is.not(wrongName.code, 0, 'an address outside the SANs does not verify');
  await g.close();
});

test('the device SDK enrolls, connects (host name checked), publishes and renews against a broker whose upstream SVID expired', async () => {
  const g = await gateway(24 * HOUR);
  const device = await connectDevice({
    dir: join(g.tmp, 'sdk'),
    gateway: { host: 'localhost', port: g.port },
    enroll: { host: '127.0.0.1', port: g.enrollPort, deviceId: 'sdk-1', token: await g.token('sdk-1') },
    clock: g.clock,
  });
  if (!device.client.connected) await new Promise((r) => device.client.once('connect', r));
  await device.client.publishAsync('devices/sdk-1/up', 'hello', { qos: 1 });
  const before = device.notAfter;
  await g.clock.advance(10 * MIN);
  await device.rotate();
  assert.ok(device.notAfter > before, 'renewed over MQTT by the gateway, offline');
  if (!device.client.connected) await new Promise((r) => device.client.once('connect', r));
  await device.client.publishAsync('devices/sdk-1/up', 'after renewal', { qos: 1 });
  await device.close();
  await g.close();
});

test('budget end: exactly at the CA NotAfter live sessions close and connections, enrollment and renewal are refused', async () => {
  // A 10-minute CA: real TLS peers (real time) accept every certificate during the test.
  const g = await gateway(10 * MIN);
  const files = await enrolledFiles(g, 'sensor-2');
  const caEnd = g.live.ca.notAfter;
  const client = await mqtt.connectAsync(`mqtts://localhost:${g.port}`, {
    key: readFileSync(files.key, 'utf8'),
    cert: readFileSync(files.cert, 'utf8'),
    ca: g.pki.bundlePem,
    clientId: 'sensor-2',
    reconnectPeriod: 0,
  });
  const closedAt = new Promise<number>((resolve) => client.once('close', () => resolve(g.clock.now())));
  await g.clock.advance(caEnd - g.clock.now() - 1);
  // Sentinel: 1 ms before the end the session still works end to end.
  await client.publishAsync('devices/sensor-2/up', 'still here', { qos: 1 });
  assert.ok(g.server.status().up);
  assert.is(g.server.status().budgetRemainingMs, 1);
  await g.clock.advance(1);
  assert.is(await closedAt, caEnd, 'the live session closed at the CA NotAfter');
  assert.ok(
    g.logger.lines.some(
      (l) =>
        l.msg === 'local service stopped: every session closed' && l.fields.code === 'ERR_SVID_UNAVAILABLE',
    ),
  );
  assert.ok(g.logger.lines.some((l) => l.fields.event === 'local.budget-ended'));
  assert.equal(g.server.status(), {
    up: false,
    certNotAfter: undefined,
    stopsAt: caEnd,
    budgetRemainingMs: 0,
  });
  // New connections: refused before the handshake (mosquitto_pub fails to connect).
  const pub = await run('mosquitto_pub', [
    '--cafile',
    files.ca,
    '--cert',
    files.cert,
    '--key',
    files.key,
    '-h',
    'localhost',
    '-p',
    String(g.port),
    '-i',
    'sensor-2',
    '-t',
    'devices/sensor-2/t',
    '-m',
    'x',
  ]).then(
    () => 0,
    (err: { code?: number }) => err.code ?? -1,
  );
  assert.is.not(pub, 0);
  assert.ok(
    g.logger.lines.some(
      (l) => l.msg === 'connection refused: gateway SVID expired' && l.fields.listener === 'mqtt',
    ),
  );
  // Enrollment with a valid token: the listener refuses the connection before the handshake.
  const late = await g.token('late');
  await rejects(
    () =>
      enroll({
        host: '127.0.0.1',
        port: g.enrollPort,
        key: newKey(),
        deviceId: 'late',
        token: late,
        now: () => g.clock.now(),
      }),
    'ERR_ENROLL_PROTOCOL',
  );
  assert.ok(
    g.logger.lines.some(
      (l) => l.msg === 'connection refused: gateway SVID expired' && l.fields.listener === 'enrollment',
    ),
  );
  // Renewal (and any signing): refused by the signer.
  await rejects(
    () => g.signer.signDevice({ deviceId: 'sensor-2', csrDer: createCsr(newKey()) }),
    'ERR_SVID_UNAVAILABLE',
  );
  client.end(true);
  await g.close();
});

test('a bridge configured while the upstream SVID is expired: the broker starts, the bridge buffers, then connects with the upstream SVID', async () => {
  // A TLS "cloud" that records the client certificate of each connection (no MQTT needed for that).
  const presented: X509Certificate[] = [];
  let onPresented: (() => void) | undefined;
  let cloud: ReturnType<typeof createTlsServer> | undefined;
  const g = await gateway(24 * HOUR, '127.0.0.1', async (pki) => {
    const cert = await makeCert({
      subject: 'CN=cloud',
      ips: ['127.0.0.1'],
      notBefore: Date.now() - HOUR,
      notAfter: Date.now() + HOUR,
      issuer: pki.root,
    });
    const server = createTlsServer(
      {
        key: cert.key.export({ type: 'pkcs8', format: 'pem' }),
        cert: cert.cert.toString(),
        requestCert: true,
        rejectUnauthorized: false,
      },
      (socket: TLSSocket) => {
        const peer = socket.getPeerX509Certificate();
        if (peer !== undefined) presented.push(peer);
        socket.destroy();
        onPresented?.();
      },
    );
    cloud = server;
    const port = await new Promise<number>((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
    );
    return {
      bridge: {
        upstream: { host: '127.0.0.1', port, ca: pki.bundlePem },
        topics: [{ local: 'devices/+/up' }],
        buffer: {
          db: new MemoryLevel<string, Uint8Array>({ valueEncoding: 'view' }) as never,
          maxMessages: 10,
          maxBytes: 1 << 20,
        },
        reconnectMs: 100,
        gatewayId: pki.gateway.id,
      },
    };
  });
  const files = await enrolledFiles(g, 'sensor-3');
  const client = await mqtt.connectAsync(`mqtts://localhost:${g.port}`, {
    key: readFileSync(files.key, 'utf8'),
    cert: readFileSync(files.cert, 'utf8'),
    ca: g.pki.bundlePem,
    clientId: 'sensor-3',
    reconnectPeriod: 0,
  });
  await client.publishAsync('devices/sensor-3/up', 'buffered while the upstream SVID is expired', { qos: 1 });
  assert.equal(
    { connected: g.broker.bridgeStats()?.connected, buffered: g.broker.bridgeStats()?.buffered },
    { connected: false, buffered: 1 },
  );
  assert.is(presented.length, 0, 'no upstream connection without an SVID');
  // The agent renews (the upstream is back): the bridge connects, presenting the upstream SVID.
  const renewed = await g.pki.gatewaySvid();
  const first = new Promise<void>((resolve) => {
    onPresented = resolve;
  });
  g.upstream.set(renewed.svid);
  await first;
  assert.is(presented[0]?.fingerprint256, renewed.cert.fingerprint256);
  assert.is.not(presented[0]?.fingerprint256, g.server.getX509Svid().chain[0]?.fingerprint256);
  client.end(true);
  await g.close();
  cloud?.close();
});

test.run();
