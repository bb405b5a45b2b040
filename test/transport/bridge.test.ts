/**
 * The upstream bridge against a real mosquitto (mTLS, require_certificate): forwarding, the
 * LevelDB (memory-level) offline buffer across a mosquitto restart with its count bound
 * (oldest dropped, counted), and reconnecting with the rotated gateway certificate.
 *
 * The cloud broker's TCP port is chosen by the OS and held by this process for the whole file:
 * mosquitto listens (TLS) on a Unix socket and a byte forwarder on 127.0.0.1:0 relays to it, so
 * there is no probe-then-bind race, and the port stays the same across mosquitto restarts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { MemoryLevel } from 'memory-level';
import mqtt, { type MqttClient } from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { OfflineBuffer } from '../../transport/bridge/buffer.ts';
import { makeCert } from '../helpers/pki.ts';
import { rig } from './setup.ts';

/** 127.0.0.1:<OS-chosen port> -> mosquitto's Unix socket; refused (closed) while it is down. */
let cloudSocket: string | undefined; // set once the rig's directory exists
const forwarder: Server = createServer((c) => {
  if (cloudSocket === undefined) {
    c.destroy();
    return;
  }
  const u = netConnect(cloudSocket);
  c.pipe(u).pipe(c);
  u.on('error', () => c.destroy());
  c.on('error', () => u.destroy());
  u.on('close', () => c.destroy());
  c.on('close', () => u.destroy());
});
const port = await new Promise<number>((resolve) =>
  forwarder.listen(0, '127.0.0.1', () => resolve((forwarder.address() as { port: number }).port)),
);

const db = new MemoryLevel<string, Uint8Array>({ valueEncoding: 'view' });
const r = await rig((pki) => ({
  bridge: {
    // The cloud broker's certificate is signed by the same test root.
    upstream: { host: '127.0.0.1', port, ca: pki.bundlePem },
    topics: [{ local: 'devices/+/up', remotePrefix: 'gw-1/' }],
    buffer: { db, maxMessages: 5, maxBytes: 1 << 20 },
    reconnectMs: 200,
  },
}));
const cloudCert = await makeCert({
  subject: 'CN=cloud',
  ips: ['127.0.0.1'],
  notBefore: Date.now() - 3600_000,
  notAfter: Date.now() + 3600_000,
  issuer: r.pki.root,
});
const files = {
  sock: join(r.tmp, 'cloud.sock'),
  ca: join(r.tmp, 'bundle.pem'),
  cert: join(r.tmp, 'cloud.pem'),
  key: join(r.tmp, 'cloud.key'),
  conf: join(r.tmp, 'mosquitto.conf'),
};
cloudSocket = files.sock;
writeFileSync(files.ca, r.pki.bundlePem);
writeFileSync(files.cert, cloudCert.cert.toString());
writeFileSync(files.key, cloudCert.key.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
writeFileSync(
  files.conf,
  [
    `user ${userInfo().username}`,
    'per_listener_settings false',
    'persistence true',
    `persistence_location ${r.tmp}/`,
    'log_dest stderr', // unbuffered: startMosquitto reads 'running' from it
    `listener 0 ${files.sock}`,
    `cafile ${files.ca}`,
    `certfile ${files.cert}`,
    `keyfile ${files.key}`,
    'require_certificate true',
    'use_identity_as_username true',
    '',
  ].join('\n'),
);

let mosquitto: ChildProcess | undefined;
/** Starts mosquitto and resolves when its log says it is running (its socket is bound then). */
async function startMosquitto(): Promise<void> {
  rmSync(files.sock, { force: true });
  const m = spawn('/usr/sbin/mosquitto', ['-c', files.conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  mosquitto = m;
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const onExit = (code: number | null) =>
      reject(new Error(`mosquitto exited (${code}) before running: ${log}`));
    const onData = (d: Buffer) => {
      log += d;
      if (!/mosquitto version \S+ running/.test(log)) return;
      m.off('exit', onExit);
      m.stderr?.off('data', onData);
      m.stderr?.resume(); // drained, not kept
      resolve();
    };
    m.stderr?.on('data', onData);
    m.once('exit', onExit);
  });
}
function stopMosquitto(): Promise<void> {
  return new Promise((resolve) => {
    if (mosquitto === undefined || mosquitto.exitCode !== null) return resolve();
    mosquitto.once('exit', () => resolve());
    mosquitto.kill('SIGTERM');
  });
}
/** Polls `cond` until it holds; fails the test after `ms`. */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  for (let t = 0; !cond(); t += 25) {
    if (t > ms) assert.unreachable(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

await startMosquitto();
const subCert = await makeCert({
  subject: 'CN=cloud-app',
  notBefore: Date.now() - 3600_000,
  notAfter: Date.now() + 3600_000,
  issuer: r.pki.root,
});
const received: string[] = [];
const cloud: MqttClient = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
  key: subCert.key.export({ type: 'pkcs8', format: 'pem' }) as string,
  cert: subCert.cert.toString(),
  ca: r.pki.bundlePem,
  clientId: 'cloud-app',
  clean: false,
  reconnectPeriod: 200,
});
cloud.on('message', (t, p) => received.push(`${t}=${p}`));
await new Promise<void>((res) => cloud.once('connect', () => res()));
await cloud.subscribeAsync('gw-1/#', { qos: 1 });

test('messages on bridged topics reach the cloud broker under the remote prefix', async () => {
  await until(() => r.broker.bridgeStats()?.connected === true, 'bridge connected');
  const dev = await r.pki.device('sensor-1');
  const c = await r.connect(dev);
  await c.publishAsync('devices/sensor-1/up', 'a', { qos: 1 });
  await c.publishAsync('devices/sensor-1/local', 'not bridged', { qos: 1 });
  // A bridged sentinel published after the unbridged message: the bridge forwards in order, so
  // once the sentinel is at the cloud, a wrongly forwarded 'local' would be there before it.
  await c.publishAsync('devices/sensor-1/up', 'sentinel', { qos: 1 });
  await until(() => received.includes('gw-1/devices/sensor-1/up=sentinel'), 'sentinel');
  assert.equal(received, ['gw-1/devices/sensor-1/up=a', 'gw-1/devices/sensor-1/up=sentinel']);
  await c.endAsync();
});

test('while the upstream is down QoS 1 messages are buffered, bounded (oldest dropped), and delivered in order after', async () => {
  await stopMosquitto();
  await until(() => r.broker.bridgeStats()?.connected === false, 'bridge disconnected');
  received.length = 0;
  const dev = await r.pki.device('sensor-2');
  const c = await r.connect(dev);
  for (let i = 0; i < 8; i++) await c.publishAsync('devices/sensor-2/up', String(i), { qos: 1 });
  await until(() => r.broker.bridgeStats()?.buffered === 5, 'five buffered');
  assert.is(r.broker.bridgeStats()?.dropped, 3);
  await startMosquitto();
  await until(() => received.length >= 5, 'buffered messages delivered', 15_000);
  assert.equal(
    received,
    [3, 4, 5, 6, 7].map((i) => `gw-1/devices/sensor-2/up=${i}`),
  );
  await until(() => r.broker.bridgeStats()?.buffered === 0, 'buffer drained');
  await c.endAsync();
});

test('after the gateway SVID rotates, the bridge reconnects with the new certificate', async () => {
  const before = r.broker.bridgeStats()?.reconnects ?? 0;
  const next = await r.pki.gatewaySvid();
  r.svids.set(next.svid);
  await until(
    () => (r.broker.bridgeStats()?.reconnects ?? 0) > before && r.broker.bridgeStats()?.connected === true,
    'reconnect',
  );
  received.length = 0;
  const dev = await r.pki.device('sensor-3');
  const c = await r.connect(dev);
  await c.publishAsync('devices/sensor-3/up', 'after-rotation', { qos: 1 });
  await until(() => received.includes('gw-1/devices/sensor-3/up=after-rotation'), 'message after rotation');
  assert.ok((r.broker.bridgeStats()?.reconnects ?? 0) > before, 'the bridge reconnected');
  assert.equal(received, ['gw-1/devices/sensor-3/up=after-rotation']);
  await c.endAsync();
});

test('the buffer resumes its contents and sequence after a restart', async () => {
  const mem = new MemoryLevel<string, Uint8Array>({ valueEncoding: 'view' });
  const a = await OfflineBuffer.open(mem, { maxMessages: 10, maxBytes: 1 << 20 });
  await a.append('t', Buffer.from('1'));
  await a.append('t', Buffer.from('2'));
  const b = await OfflineBuffer.open(mem, { maxMessages: 10, maxBytes: 1 << 20 });
  assert.is(b.size, 2);
  await b.append('t', Buffer.from('3'));
  const order: string[] = [];
  for (let m = await b.peek(); m !== undefined; m = await b.peek()) {
    order.push(m.payload.toString());
    await b.ack(m.key);
  }
  assert.equal(order, ['1', '2', '3']);
  const tiny = await OfflineBuffer.open(mem, { maxMessages: 10, maxBytes: 64 });
  await tiny.append('t', Buffer.alloc(100));
  assert.is(tiny.dropped, 1, 'a message larger than the byte bound is dropped, counted');
  await mem.close();
});

test.after(async () => {
  cloud.end(true);
  await r.close();
  await stopMosquitto();
  await new Promise((res) => forwarder.close(res));
  await db.close();
});
test.run();
