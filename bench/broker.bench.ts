/**
 * The broker side by side with mosquitto 2 (Debian), per BENCHMARKS.md and issue 7: the same
 * load generator (this file, mqtt.js with one shared SecureContext per identity) and the same
 * certificates against both; broker CPU read from /proc/<pid>/stat around each load.
 *
 * - CPU per mTLS connect (CONNECT/CONNACK/DISCONNECT), median of alternating rounds;
 * - QoS 1: one publisher device, one subscriber, broker CPU per message and messages per second;
 * - RSS with 1,000 idle mTLS devices (each its own certificate), and the floor: a bare Node
 *   `tls.Server` holding 1,000 TLS sockets (printed as ratios edgeward / floor, mosquitto / floor);
 * - the same floor's CPU per mTLS handshake alone, against mosquitto's whole connect.
 * Reference column: plain aedes on `tls.Server` without any hook. edgeward runs with the node
 * flag it ships with (`--max-semi-space-size=1`); a reference line gives it without the flag.
 * Goals (issue 7): CPU per connect <= 1.1x mosquitto, CPU per message <= 1.5x, RSS at 1,000 <= 100 MB.
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
import { median } from './stats.ts';

const CONNECTS = Number(process.env.BENCH_CONNECTS ?? 200);
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000);
const IDLE = Number(process.env.BENCH_IDLE ?? 1000);
const ROUNDS = 3;
const TICK_MS = 1000 / 100; // USER_HZ

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

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = netServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * The node flag edgeward ships with (firmware-hooks/build/edgeward.service, `npm start`): a 1 MB
 * young generation. The edgeward broker runs with it, as deployed; `unflagged` runs it without.
 */
const LAUNCH_FLAGS = ['--max-semi-space-size=1'];

async function startEdgeward(
  material: string,
  mode: '' | 'bare' | 'plain' | 'unflagged' = '',
): Promise<Peer> {
  const prof = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const flags = mode === '' ? LAUNCH_FLAGS : [];
  const server = mode === '' || mode === 'unflagged' ? [] : [`--${mode}`];
  const proc = spawn(process.execPath, [...prof, ...flags, SERVER_JS, material, ...server], {
    stdio: ['pipe', 'pipe', 'inherit'],
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
  return {
    name:
      mode === 'bare'
        ? 'node tls floor'
        : mode === 'plain'
          ? 'plain aedes'
          : mode === 'unflagged'
            ? 'edgeward unflagged'
            : 'edgeward',
    proc,
    port,
  };
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

/** A TLS handshake only (the floor): done when the server's post-handshake tickets arrive. */
function tlsHandshake(port: number, ctx: SecureContext): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, secureContext: ctx });
    s.once('session', () => {
      s.destroy();
      resolve();
    });
    s.once('error', reject);
  });
}

async function connectRound(p: Peer, ids: { ctx: SecureContext; clientId: string }[]): Promise<number> {
  const before = cpuMs(p.proc.pid as number);
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < CONNECTS) {
        const who = ids[next++ % ids.length] as { ctx: SecureContext; clientId: string };
        if (p.name === 'node tls floor') {
          await tlsHandshake(p.port, who.ctx);
          continue;
        }
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

async function idleRss(
  p: Peer,
  devs: { ctx: SecureContext; clientId: string }[],
  rawTls: boolean,
): Promise<{ empty: number; full: number }> {
  await new Promise((r) => setTimeout(r, 300));
  const empty = rssMb(p.proc.pid as number);
  const held: { end(): void }[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < devs.length) {
        const d = devs[next++] as { ctx: SecureContext; clientId: string };
        if (rawTls) {
          held.push(
            await new Promise((resolve, reject) => {
              const s = tlsConnect({ host: '127.0.0.1', port: p.port, secureContext: d.ctx }, () =>
                resolve({ end: () => s.destroy() }),
              );
              s.once('error', reject);
            }),
          );
        } else {
          const c = await mqttConnect(p.port, d.ctx, d.clientId);
          held.push({ end: () => c.end(true) });
        }
      }
    }),
  );
  await new Promise((r) => setTimeout(r, 1000));
  const full = rssMb(p.proc.pid as number);
  for (const h of held) h.end();
  return { empty, full };
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
  const unflagged = await startEdgeward(material, 'unflagged');
  const peers = [edge, mosq, plain, floor, unflagged];
  try {
    // Warm up both (JIT, session caches), then alternate rounds.
    for (const p of peers) await connectRound(p, ids.slice(0, 50));
    const connect: Record<string, number[]> = {
      edgeward: [],
      mosquitto: [],
      'plain aedes': [],
      'node tls floor': [],
      'edgeward unflagged': [],
    };
    const msgs: Record<string, { cpuPerMsgUs: number; perSecond: number }[]> = {
      edgeward: [],
      mosquitto: [],
      'plain aedes': [],
      'edgeward unflagged': [],
    };
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of r % 2 === 0 ? peers : [...peers].reverse()) {
        connect[p.name]?.push(await connectRound(p, ids.slice(0, 50)));
        if (p !== floor) msgs[p.name]?.push(await messageRound(p, ids[1] as (typeof ids)[0], collector));
      }
    }
    const e = {
      c: median(connect.edgeward ?? []),
      m: median((msgs.edgeward ?? []).map((x) => x.cpuPerMsgUs)),
      t: median((msgs.edgeward ?? []).map((x) => x.perSecond)),
    };
    const q = {
      c: median(connect.mosquitto ?? []),
      m: median((msgs.mosquitto ?? []).map((x) => x.cpuPerMsgUs)),
      t: median((msgs.mosquitto ?? []).map((x) => x.perSecond)),
    };
    const pl = {
      c: median(connect['plain aedes'] ?? []),
      m: median((msgs['plain aedes'] ?? []).map((x) => x.cpuPerMsgUs)),
    };
    const floorConnect = median(connect['node tls floor'] ?? []);
    const un = {
      c: median(connect['edgeward unflagged'] ?? []),
      m: median((msgs['edgeward unflagged'] ?? []).map((x) => x.cpuPerMsgUs)),
    };
    await stop(unflagged);
    await stop(edge);
    await stop(mosq);
    await stop(plain);
    await stop(floor);
    // RSS on fresh processes, one at a time: the message rounds above grew the heaps.
    const idle: Record<string, { empty: number; full: number }> = {};
    for (const [name, fresh, raw] of [
      ['edgeward', () => startEdgeward(material), false],
      ['mosquitto', () => startMosquitto(dir), false],
      ['plain', () => startEdgeward(material, 'plain'), false],
      ['floor', () => startEdgeward(material, 'bare'), true],
      ['unflagged', () => startEdgeward(material, 'unflagged'), false],
    ] as const) {
      const p = await fresh();
      peers.push(p);
      idle[name] = await idleRss(p, ids.slice(0, IDLE), raw);
      await stop(p);
    }
    const idleE = idle.edgeward as { empty: number; full: number };
    const idleQ = idle.mosquitto as { empty: number; full: number };
    const idleF = idle.floor as { empty: number; full: number };
    const idleP = idle.plain as { empty: number; full: number };
    const idleU = idle.unflagged as { empty: number; full: number };
    const row = (name: string, a: number, b: number, unit: string, goal: string) =>
      console.log(
        `${name.padEnd(34)} ${a.toFixed(2).padStart(9)} ${b.toFixed(2).padStart(9)} ${unit.padEnd(6)} ${(a / b).toFixed(2).padStart(6)}x  ${goal}`,
      );
    console.log(
      `\n${'measure'.padEnd(34)} ${'edgeward'.padStart(9)} ${'mosquitto'.padStart(9)} unit   ratio   goal`,
    );
    row('broker CPU per mTLS connect', e.c, q.c, 'ms', '<= 1.1x');
    row('broker CPU per QoS 1 message', e.m, q.m, 'us', '<= 1.5x');
    row('QoS 1 messages per second', e.t, q.t, 'msg/s', '(higher is better)');
    row(
      `RSS with ${IDLE} idle devices`,
      idleE.full,
      idleQ.full,
      'MB',
      `<= 100 MB (edgeward ${idleE.full.toFixed(0)} MB)`,
    );
    row('RSS empty', idleE.empty, idleQ.empty, 'MB', '');
    row(
      `RSS per idle device`,
      ((idleE.full - idleE.empty) * 1024) / IDLE,
      ((idleQ.full - idleQ.empty) * 1024) / IDLE,
      'KB',
      '',
    );
    console.log(
      `node tls.Server floor: ${idleF.full.toFixed(1)} MB with ${IDLE} TLS sockets (${idleF.empty.toFixed(1)} MB empty); RSS edgeward / floor = ${(idleE.full / idleF.full).toFixed(2)}x, mosquitto / floor = ${(idleQ.full / idleF.full).toFixed(2)}x`,
    );
    console.log(
      `node tls.Server floor, CPU per mTLS handshake alone (no MQTT): ${floorConnect.toFixed(2)} ms = ${(floorConnect / q.c).toFixed(2)}x mosquitto's whole connect; edgeward connect / floor = ${(e.c / floorConnect).toFixed(2)}x`,
    );
    console.log(
      `reference, plain aedes on tls.Server without hooks: ${pl.c.toFixed(2)} ms per connect (${(pl.c / q.c).toFixed(2)}x mosquitto), ${pl.m.toFixed(1)} us per message (${(pl.m / q.m).toFixed(2)}x), ${idleP.full.toFixed(1)} MB with ${IDLE} idle devices (${idleP.empty.toFixed(1)} MB empty)`,
    );
    console.log(
      `edgeward as shipped runs node ${LAUNCH_FLAGS.join(' ')}; without it: ${un.c.toFixed(2)} ms per connect (${(un.c / q.c).toFixed(2)}x mosquitto), ${un.m.toFixed(1)} us per message (${(un.m / q.m).toFixed(2)}x), ${idleU.full.toFixed(1)} MB with ${IDLE} idle devices (${(idleU.full / idleF.full).toFixed(2)}x the floor)`,
    );
    console.log(
      `(connect: ${CONNECTS} per round, messages: ${MESSAGES} per round, ${ROUNDS} rounds alternating, medians)`,
    );
  } finally {
    for (const p of peers) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
  }
}
