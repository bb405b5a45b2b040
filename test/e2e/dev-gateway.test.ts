/**
 * The whole gateway as a user meets it, with real processes: `edgeward agent --dev` (TypeScript
 * TPM simulator → in-process issuer → sealed store → broker), `edgeward device token create`
 * through the admin socket, `edgeward device enroll` over the enrollment listener, then the real
 * mosquitto_sub/mosquitto_pub with the files enroll wrote. Then a restart served from the sealed
 * cache, and a kill -9 after which the store still loads.
 */

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = join(ROOT, 'runtime/cli/bin.ts');
const dir = mkdtempSync(join(tmpdir(), 'edgeward-e2e-'));
const dataDir = join(dir, '.edgeward');
const socket = join(dataDir, 'admin.sock');

interface Status {
  gateway: { spiffeId: string; serving: boolean };
  svid: { notAfter: string };
  rotation: { last: string; lastVia: string };
  broker: { listeners: { name: string; address: string }[] };
  devices: number;
}

let agent: ChildProcess | undefined;
let log = '';

function startAgent(): void {
  agent = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      BIN,
      'agent',
      '--dev',
      '--data-dir',
      dataDir,
      '--mqtt-port',
      '0',
      '--enroll-port',
      '0',
    ],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  agent.stdout?.on('data', (d) => (log += d));
  agent.stderr?.on('data', (d) => (log += d));
}

async function stopAgent(signal: NodeJS.Signals): Promise<void> {
  const child = agent;
  if (child === undefined || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
  agent = undefined;
}

const cli = async (...args: string[]) =>
  (await run(process.execPath, ['--import', 'tsx', BIN, ...args], { cwd: ROOT })).stdout;

async function waitServing(): Promise<Status> {
  for (let i = 0; i < 150; i++) {
    try {
      const s = JSON.parse(await cli('status', '--json', '--socket', socket)) as Status;
      if (s.gateway.serving && s.broker.listeners.length === 2) return s;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`agent did not start serving:\n${log}`);
}

const addr = (s: Status, name: string) => {
  const a = s.broker.listeners.find((l) => l.name === name)?.address ?? '';
  const i = a.lastIndexOf(':');
  return { host: a.slice(0, i), port: a.slice(i + 1) };
};

let status: Status;
const device = join(dir, 'sensor-1');

test.after(async () => {
  await stopAgent('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

test('agent --dev attests through the simulator and serves a gateway SVID', async () => {
  startAgent();
  status = await waitServing();
  assert.match(status.gateway.spiffeId, /^spiffe:\/\/edgeward\.dev\/gateway\/tpm-[0-9a-f]{16}$/);
  assert.is(status.rotation.lastVia, 'attest');
  assert.ok(Date.parse(status.svid.notAfter) > Date.now());
  assert.is(statSync(socket).mode & 0o777, 0o600);
  assert.not.match(log, /PRIVATE KEY/);
});

test('a device enrolls with a one-time token and talks over mTLS with mosquitto clients', async () => {
  const token = (
    await cli('device', 'token', 'create', '--id', 'sensor-1', '--ttl', '10m', '--socket', socket)
  ).trim();
  const enroll = addr(status, 'enrollment');
  const enrollInto = (out: string) =>
    cli(
      'device',
      'enroll',
      '--gateway',
      `${enroll.host}:${enroll.port}`,
      '--id',
      'sensor-1',
      '--token',
      token,
      '--out',
      out,
    );
  await enrollInto(device);
  assert.is(statSync(join(device, 'key.pem')).mode & 0o777, 0o600);
  // The token was single use.
  const again = await enrollInto(join(dir, 'again')).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  assert.is(again.code, 1, again.stderr);
  assert.match(again.stderr, /ERR_ENROLL_TOKEN_INVALID/);

  const mqtt = addr(status, 'mqtt');
  const tls = [
    '-h',
    mqtt.host,
    '-p',
    mqtt.port,
    '--cafile',
    join(device, 'bundle.pem'),
    '--cert',
    join(device, 'svid.pem'),
    '--key',
    join(device, 'key.pem'),
  ];
  // The default policy: one connection per device (client id = device id), own subtree only.
  // Publish a retained QoS 1 message (PUBACK => exit 0), then read it back as the same device.
  await run('mosquitto_pub', [
    ...tls,
    '-i',
    'sensor-1',
    '-t',
    'devices/sensor-1/state',
    '-m',
    '21.5',
    '-q',
    '1',
    '-r',
  ]);
  const got = await run('mosquitto_sub', [
    ...tls,
    '-i',
    'sensor-1',
    '-t',
    'devices/sensor-1/#',
    '-C',
    '1',
    '-W',
    '10',
  ]);
  assert.is(got.stdout.trim(), '21.5');
  // Another device's topics are refused: SUBACK 0x80 (mosquitto_sub shows it only with -d).
  const denied = await run('mosquitto_sub', [
    ...tls,
    '-d',
    '-i',
    'sensor-1',
    '-t',
    'devices/sensor-2/#',
    '-C',
    '1',
    '-W',
    '2',
  ]).then(
    (r) => r.stdout,
    (e: { stdout: string }) => e.stdout,
  );
  assert.match(denied, /Subscribed \(mid: \d+\): 128/);
  const s = JSON.parse(await cli('status', '--json', '--socket', socket)) as Status;
  assert.ok(s.devices >= 1);
});

test('after a restart the agent serves the sealed cached identity without re-attesting', async () => {
  await stopAgent('SIGTERM');
  startAgent();
  const s = await waitServing();
  assert.is(s.gateway.spiffeId, status.gateway.spiffeId);
  assert.is(s.svid.notAfter, status.svid.notAfter);
  assert.is(
    s.rotation.last,
    status.rotation.last,
    'no new rotation: the identity came from the sealed store',
  );
});

test('after kill -9 the store loads and the same identity is served', async () => {
  await stopAgent('SIGKILL');
  startAgent();
  const s = await waitServing();
  assert.is(s.gateway.spiffeId, status.gateway.spiffeId);
});

test.run();
