/**
 * The broker side by side with mosquitto 2 (Debian), per BENCHMARKS.md and issue 7: the same
 * load generator (this file, mqtt.js with one shared SecureContext per identity) and the same
 * certificates against both; broker CPU read from /proc/<pid>/stat around each load.
 *
 * - CPU per mTLS connect (CONNECT/CONNACK/DISCONNECT), median of alternating rounds;
 * - QoS 1: one publisher device, one subscriber, broker CPU per message and messages per second;
 * - RSS with 1,000 idle mTLS devices (each its own certificate): right after they connected (peak)
 *   and settled, 35 s later, once V8's memory reducer has run (what a gateway with idle devices
 *   holds); all brokers hold their devices at once, so the wait is paid once.
 * Columns: edgeward launched as its systemd unit launches it (node flags and Environment= read from
 * firmware-hooks/build/edgeward.service), mosquitto, plain aedes on `tls.Server` without any hook
 * (the reference), Node's floor (a bare `tls.Server` with mqtt-packet and trivial routing: the
 * least any MQTT server on Node pays, see bench/broker-server.ts), and edgeward under the other launch setting.
 * Goals (issue 7): CPU per connect <= 1.1x mosquitto, CPU per message <= 1.5x, RSS at 1,000 <= 100 MB.
 * BENCH_FLAGS replaces the unit's node flags for the edgeward column (to compare launch settings).
 * Sizes: BENCH_CONNECTS (default 200 per round), BENCH_MESSAGES (20,000), BENCH_IDLE (1,000).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as netServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { createSecureContext, type SecureContext, connect as tlsConnect } from 'node:tls';
import mqtt, { type MqttClient } from 'mqtt';
import { buildPki, type Issued, makeCert } from '../test/helpers/pki.ts';
import { cpuMs, rssMb, unitEnvironment, unitNodeFlags } from './process.ts';
import { median } from './stats.ts';

const CONNECTS = Number(process.env.BENCH_CONNECTS ?? 200);
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000);
const IDLE = Number(process.env.BENCH_IDLE ?? 1000);
const ROUNDS = 5;
const SETTLE_MS = 35_000;

interface Peer {
  name: string;
  proc: ChildProcess;
  port: number;
}

// The broker child runs compiled JS: under tsx its RSS would include the esbuild transpiler.
const SERVER_JS = 'bench/out/broker/bench/broker-server.js';

function compileServer(): void {
  const r = spawnSync(
    process.execPath,
    [
      'node_modules/typescript/bin/tsc',
      'bench/broker-server.ts',
      ...[
        '--outDir',
        'bench/out/broker',
        '--rootDir',
        '.',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
      ],
      ...['--target', 'es2022', '--rewriteRelativeImportExtensions', '--allowImportingTsExtensions'],
      ...['--skipLibCheck', '--noCheck', '--types', 'node'],
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`cannot compile bench/broker-server.ts: ${r.stdout}${r.stderr}`);
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = netServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

interface Launch {
  flags: string[];
  env: Record<string, string>;
}

/** The node flags and environment of the shipped systemd unit (what a gateway runs). */
function shippedLaunch(): Launch {
  const unit = readFileSync('firmware-hooks/build/edgeward.service', 'utf8');
  const flags = unitNodeFlags(unit);
  const env = unitEnvironment(unit);
  delete env.NODE_ENV;
  if (process.env.BENCH_FLAGS !== undefined)
    flags.splice(0, flags.length, ...process.env.BENCH_FLAGS.split(' ').filter(Boolean));
  return { flags, env };
}

const SHIPPED = shippedLaunch();
/** The other setting, for comparison: plain node if the unit sets anything, else a 1 MB young generation. */
const OTHER: Launch =
  SHIPPED.flags.length > 0 || Object.keys(SHIPPED.env).length > 0
    ? { flags: [], env: {} }
    : { flags: ['--max-semi-space-size=1'], env: {} };
const describe = (l: Launch): string =>
  [...l.flags, ...Object.entries(l.env).map(([k, v]) => `${k}=${v}`)].join(' ') || 'plain node';

async function startEdgeward(material: string, mode: '' | 'bare' | 'plain' | 'other' = ''): Promise<Peer> {
  const prof = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const launch = mode === '' ? SHIPPED : mode === 'other' ? OTHER : { flags: [], env: {} };
  const server = mode === 'bare' || mode === 'plain' ? [`--${mode}`] : [];
  const proc = spawn(process.execPath, [...prof, ...launch.flags, SERVER_JS, material, ...server], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ...launch.env },
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`broker-server exited ${code}`)));
  });
  const name = { bare: 'node floor', plain: 'plain aedes', other: 'edgeward other', '': 'edgeward' }[mode];
  return { name, proc, port };
}

async function startMosquitto(dir: string): Promise<Peer> {
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      // mosquitto drops root privileges to its own user, which cannot read this 0700 temp dir.
      `user ${userInfo().username}`,
      'per_listener_settings false',
      'persistence false',
      'log_dest none',
      `listener ${port} 127.0.0.1`,
      `cafile ${join(dir, 'bundle.pem')}`,
      `certfile ${join(dir, 'gateway.pem')}`,
      `keyfile ${join(dir, 'gateway.key')}`,
      'require_certificate true',
      'use_identity_as_username true',
      'allow_anonymous false',
      'max_connections -1',
      '',
    ].join('\n'),
  );
  const proc = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { name: 'mosquitto', proc, port };
}

function stop(p: Peer): Promise<void> {
  return new Promise((resolve) => {
    p.proc.once('exit', () => resolve());
    if (p.name === 'mosquitto') p.proc.kill('SIGTERM');
    else p.proc.stdin?.end();
  });
}

function mqttConnect(port: number, ctx: SecureContext, clientId: string): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const opts = {
      protocol: 'mqtts',
      host: '127.0.0.1',
      port,
      secureContext: ctx,
      clientId,
      reconnectPeriod: 0,
      keepalive: 60,
      protocolVersion: 4,
    } as mqtt.IClientOptions;
    const c = mqtt.connect(opts);
    c.once('connect', () => resolve(c));
    c.once('error', (e) => {
      c.end(true);
      reject(e);
    });
  });
}

const ctxOf = (who: Issued, bundlePem: string): SecureContext =>
  createSecureContext({ key: who.pem.key, cert: who.pem.cert, ca: bundlePem });

async function connectRound(p: Peer, ids: { ctx: SecureContext; clientId: string }[]): Promise<number> {
  const before = cpuMs(p.proc.pid as number);
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < CONNECTS) {
        const who = ids[next++ % ids.length] as { ctx: SecureContext; clientId: string };
        const c = await mqttConnect(p.port, who.ctx, who.clientId);
        await c.endAsync();
      }
    }),
  );
  await new Promise((r) => setTimeout(r, 200));
  return (cpuMs(p.proc.pid as number) - before) / CONNECTS;
}

async function messageRound(
  p: Peer,
  pub: { ctx: SecureContext; clientId: string },
  sub: { ctx: SecureContext; clientId: string },
) {
  const subscriber = await mqttConnect(p.port, sub.ctx, sub.clientId);
  await subscriber.subscribeAsync(`devices/${pub.clientId}/#`, { qos: 1 });
  const publisher = await mqttConnect(p.port, pub.ctx, pub.clientId);
  let received = 0;
  let lastAt = performance.now();
  const all = new Promise<void>((resolve) =>
    subscriber.on('message', () => {
      lastAt = performance.now();
      if (++received === MESSAGES) resolve();
    }),
  );
  // A broker may drop QoS 1 messages for a slow subscriber (mosquitto beyond max_queued_messages):
  // stop waiting 2 s after the last delivery instead of hanging, and say so.
  const quiet = new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (performance.now() - lastAt > 2000) {
        clearInterval(check);
        resolve();
      }
    }, 250);
    void all.then(() => {
      clearInterval(check);
      resolve();
    });
  });
  const before = cpuMs(p.proc.pid as number);
  const t0 = performance.now();
  let sent = 0;
  let acked = 0;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (sent < MESSAGES && sent - acked < 200) {
        sent++;
        publisher.publish(`devices/${pub.clientId}/m`, 'payload-0123456789', { qos: 1 }, () => {
          acked++;
          if (acked === MESSAGES) resolve();
          else pump();
        });
      }
    };
    pump();
  });
  await quiet;
  if (received < MESSAGES)
    console.log(`${p.name}: ${MESSAGES - received} of ${MESSAGES} QoS 1 messages not delivered`);
  const ms = (received === MESSAGES ? performance.now() : lastAt) - t0;
  const cpu = cpuMs(p.proc.pid as number) - before;
  await publisher.endAsync();
  await subscriber.endAsync();
  return { cpuPerMsgUs: (cpu * 1000) / MESSAGES, perSecond: (received / ms) * 1000 };
}

/** Connects `devs` to `p` and keeps them; `peak` is the broker's RSS one second later. */
async function holdIdle(
  p: Peer,
  devs: { ctx: SecureContext; clientId: string }[],
): Promise<{ empty: number; peak: number; held: MqttClient[] }> {
  await new Promise((r) => setTimeout(r, 300));
  const empty = rssMb(p.proc.pid as number);
  const held: MqttClient[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < devs.length) {
        const d = devs[next++] as { ctx: SecureContext; clientId: string };
        held.push(await mqttConnect(p.port, d.ctx, d.clientId));
      }
    }),
  );
  await new Promise((r) => setTimeout(r, 1000));
  return { empty, peak: rssMb(p.proc.pid as number), held };
}

export default async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-bench-broker-'));
  const pki = await buildPki({ now: Date.now() });
  writeFileSync(join(dir, 'bundle.pem'), pki.bundlePem);
  writeFileSync(join(dir, 'gateway.pem'), pki.gateway.pem.cert);
  writeFileSync(join(dir, 'gateway.key'), pki.gateway.pem.key, { mode: 0o600 });
  const material = join(dir, 'material.json');
  writeFileSync(
    material,
    JSON.stringify({
      trustDomain: pki.trustDomain,
      gatewayId: pki.gateway.id,
      key: pki.gateway.pem.key,
      chain: [pki.gateway.cert.toString()],
      roots: [pki.bundlePem],
      caCert: pki.deviceCa.cert.toString(),
      caKey: pki.deviceCa.key.export({ type: 'pkcs8', format: 'pem' }),
    }),
    { mode: 0o600 },
  );
  const t0 = performance.now();
  const devices = [];
  for (let i = 0; i < Math.max(IDLE, 50); i++) devices.push(await pki.device(`d${i}`));
  const ids = devices.map((d) => ({
    ctx: ctxOf(d, pki.bundlePem),
    clientId: d.id.split('/').pop() as string,
  }));
  const svc = await makeCert({
    subject: 'CN=collector',
    uris: [`${pki.gateway.id}/svc/collector`],
    notBefore: Date.now() - 3_600_000,
    notAfter: Date.now() + 3_600_000,
    issuer: pki.root,
  });
  const collector = {
    ctx: createSecureContext({
      key: svc.key.export({ type: 'pkcs8', format: 'pem' }),
      cert: svc.cert.toString(),
      ca: pki.bundlePem,
    }),
    clientId: 'collector',
  };
  console.log(
    `certificates for ${devices.length} devices built in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );

  compileServer();
  const edge = await startEdgeward(material);
  const mosq = await startMosquitto(dir);
  const plain = await startEdgeward(material, 'plain');
  const floor = await startEdgeward(material, 'bare');
  const other = await startEdgeward(material, 'other');
  const peers = [edge, mosq, plain, floor, other];
  try {
    // Warm up all (JIT, session caches), then alternate rounds.
    for (const p of peers) await connectRound(p, ids.slice(0, 50));
    const connect = new Map<Peer, number[]>(peers.map((p) => [p, []]));
    const msgs = new Map<Peer, { cpuPerMsgUs: number; perSecond: number }[]>(peers.map((p) => [p, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of r % 2 === 0 ? peers : [...peers].reverse()) {
        connect.get(p)?.push(await connectRound(p, ids.slice(0, 50)));
        msgs.get(p)?.push(await messageRound(p, ids[1] as (typeof ids)[0], collector));
      }
    }
    const c = (p: Peer) => median(connect.get(p) ?? []);
    const m = (p: Peer) => median((msgs.get(p) ?? []).map((x) => x.cpuPerMsgUs));
    const t = (p: Peer) => median((msgs.get(p) ?? []).map((x) => x.perSecond));
    for (const p of peers) await stop(p);
    // RSS on fresh processes (the rounds above grew the heaps), all holding their devices at once.
    const fresh = [
      await startEdgeward(material),
      await startMosquitto(dir),
      await startEdgeward(material, 'plain'),
      await startEdgeward(material, 'bare'),
      await startEdgeward(material, 'other'),
    ];
    peers.push(...fresh);
    const held: Awaited<ReturnType<typeof holdIdle>>[] = [];
    for (const p of fresh) held.push(await holdIdle(p, ids.slice(0, IDLE)));
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const idle = fresh.map((p, i) => ({
      ...(held[i] as { empty: number; peak: number }),
      settled: rssMb(p.proc.pid as number),
    }));
    for (const h of held) for (const client of h.held) client.end(true);
    for (const p of fresh) await stop(p);
    const [idleE, idleQ, idleP, idleF, idleO] = idle as [
      (typeof idle)[0],
      (typeof idle)[0],
      (typeof idle)[0],
      (typeof idle)[0],
      (typeof idle)[0],
    ];

    const row = (name: string, a: number, b: number, unit: string, goal: string) =>
      console.log(
        `${name.padEnd(38)} ${a.toFixed(2).padStart(9)} ${b.toFixed(2).padStart(9)} ${unit.padEnd(6)} ${(a / b).toFixed(2).padStart(6)}x  ${goal}`,
      );
    console.log(`\nedgeward launched as its unit: ${describe(SHIPPED)}`);
    console.log(
      `${'measure'.padEnd(38)} ${'edgeward'.padStart(9)} ${'mosquitto'.padStart(9)} unit   ratio   goal`,
    );
    row('broker CPU per mTLS connect', c(edge), c(mosq), 'ms', '<= 1.1x');
    row('broker CPU per QoS 1 message', m(edge), m(mosq), 'us', '<= 1.5x');
    row('QoS 1 messages per second', t(edge), t(mosq), 'msg/s', '(higher is better)');
    row(
      `RSS, ${IDLE} idle devices, settled`,
      idleE.settled,
      idleQ.settled,
      'MB',
      `<= 100 MB (edgeward ${idleE.settled.toFixed(0)} MB; ${(idleE.settled / idleF.settled).toFixed(2)}x the node floor)`,
    );
    row(`RSS, ${IDLE} devices, 1 s after connecting`, idleE.peak, idleQ.peak, 'MB', '');
    row('RSS empty', idleE.empty, idleQ.empty, 'MB', '');
    row(
      'RSS per idle device, settled',
      ((idleE.settled - idleE.empty) * 1024) / IDLE,
      ((idleQ.settled - idleQ.empty) * 1024) / IDLE,
      'KB',
      '',
    );
    const ref = (name: string, p: Peer, r: (typeof idle)[0], msg: boolean) =>
      console.log(
        `${name}: ${c(p).toFixed(2)} ms per connect (${(c(p) / c(mosq)).toFixed(2)}x mosquitto, ${(c(p) / c(floor)).toFixed(2)}x the floor)${msg ? `, ${m(p).toFixed(1)} us per message (${(m(p) / m(mosq)).toFixed(2)}x)` : ''}, RSS with ${IDLE} devices ${r.settled.toFixed(1)} MB settled (${r.peak.toFixed(1)} MB at 1 s, ${r.empty.toFixed(1)} MB empty)`,
      );
    ref('node floor (tls.Server + mqtt-packet, trivial routing)', floor, idleF, true);
    ref('plain aedes on tls.Server, no hooks', plain, idleP, true);
    ref(`edgeward under ${describe(OTHER)}`, other, idleO, true);
    console.log(
      `edgeward connect / plain aedes connect = ${(c(edge) / c(plain)).toFixed(2)}x; mosquitto settled RSS / node floor = ${(idleQ.settled / idleF.settled).toFixed(2)}x`,
    );
    console.log(
      `(connect: ${CONNECTS} per round, messages: ${MESSAGES} per round, ${ROUNDS} rounds alternating, medians)`,
    );
  } finally {
    for (const p of peers) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
  }
}
