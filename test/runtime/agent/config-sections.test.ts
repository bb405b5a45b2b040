/**
 * The agent config's `bridge` and `factory` sections (config version 2), end to end from a config
 * file through `edgeward agent --config` (the CLI composition root, in-process): the TypeScript
 * TPM simulator, an in-process issuer, a real mosquitto as the cloud broker (mTLS, the gateway
 * SVID as client certificate). A device with a factory certificate enrolls with the real
 * enrollment client (the allow-list from the config is honoured), publishes over mTLS, and the
 * bridge forwards its message to mosquitto, where a subscriber on mosquitto receives it. Also: files named by
 * these sections that are unreadable or hold no certificate give typed config errors.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { adminRequest } from '../../../runtime/admin/client.ts';
import type { StatusReport } from '../../../runtime/admin/report.ts';
import { planFromConfig } from '../../../runtime/agent/plan.ts';
import { main } from '../../../runtime/cli/main.ts';
import { loadAgentConfigText } from '../../../runtime/config/agent-load.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { nullLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { openSimTransport } from '../../../sim/tpm/index.ts';
import { enroll } from '../../../transport/enroll/est-client.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { makeCert } from '../../helpers/pki.ts';
import { rejects } from '../../helpers/rejects.ts';
import { startTpmIssuer } from './helpers/tpm-issuer.ts';

const HOUR = 3_600_000;
const now = Date.now();
const dir = mkdtempSync(join(tmpdir(), 'edgeward-sections-'));
const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });

// The gateway's TPM (simulator) and its issuer.
const tpmDir = join(dir, 'tpm');
await (await openSimTransport(tpmDir)).close();
const pem = (f: string) => new X509Certificate(readFileSync(join(tpmDir, f)));
const { issuer, files } = await startTpmIssuer(dir, {
  roots: [pem('manufacturer-root-ca.pem')],
  intermediates: [pem('manufacturer-intermediate-ca.pem')],
  pcrSelection: 'sha256:0,1,2,3,4,5,6,7',
});

// The device manufacturer's root, and the cloud broker's PKI.
const mfg = await makeCert({
  subject: 'CN=ACME devices root',
  ca: true,
  notBefore: now - HOUR,
  notAfter: now + HOUR,
});
const cloudRoot = await makeCert({
  subject: 'CN=cloud root',
  ca: true,
  notBefore: now - HOUR,
  notAfter: now + HOUR,
});
const cloud = await makeCert({
  subject: 'CN=cloud',
  ips: ['127.0.0.1'],
  notBefore: now - HOUR,
  notAfter: now + HOUR,
  issuer: cloudRoot,
});
const path = (name: string, text: string, mode = 0o644) => {
  const p = join(dir, name);
  writeFileSync(p, text, { mode });
  return p;
};
const mfgFile = path('mfg-roots.pem', mfg.cert.toString());
const cloudCaFile = path('cloud-ca.pem', cloudRoot.cert.toString());

// mosquitto: mTLS listener for the bridge (client certificates from the fleet CA), plain local one for mosquitto_sub.
const [tlsPort, plainPort] = [await freePort(), await freePort()];
const conf = path(
  'mosquitto.conf',
  [
    `user ${userInfo().username}`,
    'per_listener_settings false',
    'allow_anonymous true',
    'log_dest none',
    `listener ${tlsPort} 127.0.0.1`,
    `cafile ${files.paths.caCertificate}`,
    `certfile ${path('cloud.pem', cloud.cert.toString())}`,
    `keyfile ${path('cloud.key', cloud.key.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600)}`,
    'require_certificate true',
    'use_identity_as_username true',
    `listener ${plainPort} 127.0.0.1`,
    '',
  ].join('\n'),
);
const mosquitto: ChildProcess = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: 'ignore' });

const configFile = path(
  'agent.yaml',
  [
    'version: 2',
    'trustDomain: fleet.example',
    `dataDir: ${join(dir, 'data')}`,
    `tpm: sim:${tpmDir}`,
    'attestation: { method: tpm, pcrs: "sha256:0,1,2,3,4,5,6,7" }',
    `upstream: { endpoints: ["${issuer.url}"], caFile: ${files.paths.caCertificate} }`,
    'broker: { listen: { port: 0 }, enrollment: { port: 0 } }',
    'bridge:',
    '  host: 127.0.0.1',
    `  port: ${tlsPort}`,
    `  caFile: ${cloudCaFile}`,
    '  topics: [{ local: devices/+/up, remotePrefix: gw/ }]',
    '  buffer: { maxMessages: 100 }',
    '  reconnect: 200ms',
    'factory:',
    `  rootsFile: ${mfgFile}`,
    '  idField: cn',
    '  allowList: [factory-1]',
    'log: { level: warn }',
    '',
  ].join('\n'),
);

const stop = new AbortController();
const io = captureIo({ cwd: dir, signal: stop.signal });
const agentDone = main(['agent', '--config', configFile], io);
const socket = join(dir, 'data', 'admin.sock');

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}\n${[...io.stdout, ...io.stderr].join('\n')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
const status = () => adminRequest<StatusReport>(socket, 'GET', '/v1/status');

test.after(async () => {
  stop.abort();
  await agentDone;
  await issuer.close();
  await new Promise((r) => {
    mosquitto.once('exit', r);
    mosquitto.kill('SIGTERM');
  });
  rmSync(dir, { recursive: true, force: true });
});

const factoryDevice = async (cn: string) => {
  const c = await makeCert({
    subject: `CN=${cn}`,
    notBefore: now - HOUR,
    notAfter: now + HOUR,
    issuer: mfg,
    eku: null,
  });
  const fingerprint = createHash('sha256').update(new X509Certificate(files.ca.certificate).raw).digest();
  return { cert: c.cert.toString(), key: c.key, bundleFingerprint: fingerprint };
};

test('factory enrollment from the config, and the bridge forwards the device message to mosquitto', async () => {
  const s = await until('the broker and a connected bridge', async () => {
    const r = await status();
    return r.broker.listeners.length === 2 && r.broker.bridge?.connected ? r : undefined;
  });
  const at = (name: string) => {
    const a = s.broker.listeners.find((l) => l.name === name)?.address as string;
    return Number(a.slice(a.lastIndexOf(':') + 1));
  };

  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const id = await enroll({
    host: '127.0.0.1',
    port: at('enrollment'),
    factory: await factoryDevice('factory-1'),
    key,
    now: () => Date.now(),
  });
  assert.ok(id.spiffeId.endsWith('/device/factory-1'), id.spiffeId);
  await rejects(
    async () =>
      enroll({
        host: '127.0.0.1',
        port: at('enrollment'),
        factory: await factoryDevice('factory-2'),
        key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
        now: () => Date.now(),
      }),
    'ERR_ENROLL_FACTORY_REFUSED',
  );

  // A subscriber on mosquitto's local listener (mosquitto_sub buffers its output on a pipe).
  const cloudSide = await mqtt.connectAsync(`mqtt://127.0.0.1:${plainPort}`, { reconnectPeriod: 0 });
  const received = new Promise<[string, string]>((resolve) =>
    cloudSide.on('message', (topic, payload) => resolve([topic, payload.toString()])),
  );
  await cloudSide.subscribeAsync('gw/#', { qos: 1 });

  const device = await mqtt.connectAsync(`mqtts://127.0.0.1:${at('mqtt')}`, {
    key: key.export({ type: 'pkcs8', format: 'pem' }) as string,
    cert: id.chainPem,
    ca: id.bundlePem,
    clientId: 'factory-1',
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  await device.publishAsync('devices/factory-1/up', 'hello from factory-1', { qos: 1 });
  await device.endAsync();
  const got = await Promise.race([received, new Promise((r) => setTimeout(() => r('timeout'), 10_000))]);
  await cloudSide.endAsync();
  assert.equal(got, ['gw/devices/factory-1/up', 'hello from factory-1']);
  // The bridge counts a QoS 1 message once the cloud broker's PUBACK is in, which may come after
  // the cloud subscriber already has it.
  const after = await until('the bridge to count the forwarded message', async () => {
    const r = await status();
    return (r.broker.bridge?.forwarded ?? 0) >= 1 ? r : undefined;
  });
  assert.is(after.broker.bridge?.buffered, 0);
});

test('bridge and factory files: unreadable or without certificates → typed config errors', async () => {
  const base = readFileSync(configFile, 'utf8').replace(
    `tpm: sim:${tpmDir}`,
    `tpm: sim:${join(dir, 'tpm-other')}`,
  );
  const plan = (text: string) =>
    planFromConfig(loadAgentConfigText(text), {
      clock: systemClock,
      random: cryptoRandom,
      logger: nullLogger,
    });
  const e1 = await rejects<{ issues: { path: string }[] }>(
    () => plan(base.replace(cloudCaFile, join(dir, 'missing.pem'))),
    'ERR_CONFIG_UNREADABLE',
  );
  assert.is(e1.issues[0]?.path, 'bridge.caFile');
  const e2 = await rejects<{ issues: { path: string }[] }>(
    () => plan(base.replace(mfgFile, path('empty.pem', 'no certificates here\n'))),
    'ERR_CONFIG_INVALID',
  );
  assert.is(e2.issues[0]?.path, 'factory.rootsFile');
});

test.run();
