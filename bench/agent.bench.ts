/**
 * `npm run bench agent`: the gateway agent, measured on the BUILT code that gateways run.
 *
 * 1. Store: write 1,000 device records in one atomic batch and reload them, through the sealed
 *    store (CBOR + AES-256-GCM per value) side by side with plain LevelDB + CBOR (the naive way,
 *    no sealing), both on classic-level; medians of 7 alternated rounds, ratio printed.
 * 2. Builds `dist/` (`npm run build`) and the gateway bundle (`npm run build:gateway`) first
 *    (BENCH_NO_BUILD=1 skips that), then fills a data dir the production way: a real swtpm, an
 *    in-process issuer trusting swtpm's EK CA, `node dist/runtime/cli/bin.js agent --config`
 *    attesting once; the config has a broker policy file, as the shipped agent.yaml does. The
 *    issuer then stops: upstream offline (connection refused).
 * 3. Offline restart, side by side in alternated rounds: spawn → the admin socket reports a valid
 *    cached SVID (goal ≤ 1 s), for dist/ and for the gateway bundle, with a bare `node -e 0`
 *    alongside for scale; then idle RSS 2 s after serving (broker up; goal ≤ 60 MB) for dist/
 *    with plain `node`, for dist/ and the bundle with the V8 flags of the shipped systemd unit
 *    (and the bundle once more with glibc told to trim freed memory, not shipped: for comparison)
 *    (read from firmware-hooks/build/edgeward.service, or BENCH_AGENT_FLAGS to try others).
 *    Medians of BENCH_AGENT_ROUNDS (default 3).
 * 4. Throughput guard for the launch flags: per variant, one device enrolled over the agent's
 *    enrollment listener (join token from the admin socket) publishes BENCH_AGENT_MESSAGES (5,000)
 *    QoS 1 messages to itself through the agent's broker; the agent's CPU per message (utime +
 *    stime from /proc) and its RSS after the load. A flag that saves idle memory must not cost here.
 * 5. Which packages the idle agent loaded (an ESM loader hook in a separate, unmeasured run).
 */
import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from 'cbor-x';
import { Level } from 'level';
import mqtt from 'mqtt';
import { adminRequest } from '../runtime/admin/client.ts';
import type { StatusReport } from '../runtime/admin/report.ts';
import { nullLogger } from '../runtime/core/logger.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { keyFileProtector } from '../runtime/store/key-file.ts';
import { type LevelDb, SealedStore } from '../runtime/store/sealed-store.ts';
import { launchSwtpm } from '../sim/swtpm/launcher.ts';
import { startTpmIssuer } from '../test/runtime/agent/helpers/tpm-issuer.ts';
import { enroll } from '../transport/enroll/client.ts';
import { median } from './stats.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const DIST_BIN = join(ROOT, 'dist/runtime/cli/bin.js');
const GATEWAY_BIN = join(ROOT, 'dist/gateway/edgeward/edgeward.mjs');
const UNIT = join(ROOT, 'firmware-hooks/build/edgeward.service');
const ROUNDS = Number(process.env.BENCH_AGENT_ROUNDS ?? 3);
const PCRS = 'sha256:0,1,2,3,4,5,6,7';
const MESSAGES = Number(process.env.BENCH_AGENT_MESSAGES ?? 5000);
const TICK_MS = 1000 / 100; // USER_HZ
function records(n: number) {
  return Array.from({ length: n }, (_, i) => ({
    deviceId: `sensor-${i}`,
    spiffeId: `spiffe://fleet.example/gateway/gw-1/device/sensor-${i}`,
    serial: (0x4000_0000_0000 + i).toString(16),
    notAfter: Date.UTC(2026, 0, 1) + 3_600_000,
    issuedAt: Date.UTC(2026, 0, 1),
  }));
}

async function storeRound(dir: string, sealed: boolean): Promise<number> {
  const recs = records(1000);
  const path = join(dir, `${sealed ? 's' : 'p'}-${Math.random()}`);
  const t0 = performance.now();
  if (sealed) {
    const db = new Level<string, Uint8Array>(path, {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    }) as unknown as LevelDb;
    const protector = await keyFileProtector(join(dir, 'kek'), cryptoRandom, nullLogger);
    let store = await SealedStore.open({ db, protector, random: cryptoRandom, logger: nullLogger });
    await store.batch(recs.map((r) => ({ type: 'put' as const, name: `device/${r.deviceId}`, value: r })));
    await store.close();
    const db2 = new Level<string, Uint8Array>(path, {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    }) as unknown as LevelDb;
    store = await SealedStore.open({ db: db2, protector, random: cryptoRandom, logger: nullLogger });
    let n = 0;
    for await (const _ of store.entries('device/')) n++;
    if (n !== 1000) throw new Error(`reloaded ${n}`);
    await store.close();
  } else {
    let db = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' });
    await db.batch(
      recs.map((r) => ({ type: 'put' as const, key: `device/${r.deviceId}`, value: encode(r) })),
    );
    await db.close();
    db = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' });
    let n = 0;
    for await (const [, v] of db.iterator({ gte: 'device/', lt: 'device/\uffff' })) {
      decode(v);
      n++;
    }
    if (n !== 1000) throw new Error(`reloaded ${n}`);
    await db.close();
  }
  return performance.now() - t0;
}

async function waitServing(socket: string, deadline: number): Promise<void> {
  for (;;) {
    try {
      const s = await adminRequest<{ gateway: { serving: boolean } }>(socket, 'GET', '/v1/status');
      if (s.gateway.serving) return;
    } catch {}
    if (performance.now() > deadline) throw new Error('agent did not serve in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The node flags of the shipped unit: what sits between `node` and the script in ExecStart. */
export function unitNodeFlags(unitText: string): string[] {
  const exec = /^ExecStart=(.*)$/m.exec(unitText)?.[1] ?? '';
  const words = exec.trim().split(/\s+/);
  const script = words.findIndex((w) => w.endsWith('.mjs') || w.endsWith('.js'));
  return words.slice(1, script < 0 ? 1 : script);
}

/** The unit's `Environment=NAME=VALUE` lines other than NODE_ENV (allocator tuning). */
export function unitEnvironment(unitText: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of unitText.matchAll(/^Environment=([A-Za-z_][A-Za-z0-9_]*)=(\S*)$/gm))
    if (m[1] !== 'NODE_ENV') env[m[1] as string] = m[2] as string;
  return env;
}

interface Variant {
  readonly name: string;
  readonly args: string[];
  readonly env?: NodeJS.ProcessEnv;
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/** Spawn the agent, time spawn → serving, optionally read its RSS after `idleMs`, stop it. */
async function runOnce(
  v: Variant,
  config: string,
  socket: string,
  idleMs: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ ms: number; rss: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [...v.args, 'agent', '--config', config], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: v.env ?? env,
  });
  try {
    await waitServing(socket, performance.now() + 30_000);
    const ms = performance.now() - t0;
    if (idleMs > 0) await new Promise((r) => setTimeout(r, idleMs));
    return { ms, rss: idleMs > 0 ? rssMb(child.pid as number) : 0 };
  } finally {
    const done = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await done;
  }
}

function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
}

/** CPU per QoS 1 message through the running agent's broker (one device publishing to itself). */
async function loadRound(
  v: Variant,
  config: string,
  socket: string,
  deviceId: string,
): Promise<{ usPerMessage: number; rssAfter: number }> {
  const child = spawn(process.execPath, [...v.args, 'agent', '--config', config], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: v.env ?? process.env,
  });
  try {
    await waitServing(socket, performance.now() + 30_000);
    let status = await adminRequest<StatusReport>(socket, 'GET', '/v1/status');
    for (let i = 0; i < 400 && status.broker.listeners.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 25)); // the broker starts right after the identity is served
      status = await adminRequest<StatusReport>(socket, 'GET', '/v1/status');
    }
    const port = (name: string) => {
      const a = status.broker.listeners.find((l) => l.name === name)?.address ?? '';
      return Number(a.slice(a.lastIndexOf(':') + 1));
    };
    const { token } = await adminRequest<{ token: string }>(socket, 'POST', '/v1/device-tokens', {
      id: deviceId,
      ttlMs: 600_000,
    });
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const id = await enroll({
      host: '127.0.0.1',
      port: port('enrollment'),
      token,
      key,
      now: () => Date.now(),
    });
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${port('mqtt')}`, {
      key: key.export({ type: 'pkcs8', format: 'pem' }) as string,
      cert: id.chainPem,
      ca: id.bundlePem,
      clientId: deviceId,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    let got = 0;
    const all = new Promise<void>((resolve) =>
      client.on('message', () => {
        if (++got === MESSAGES) resolve();
      }),
    );
    await client.subscribeAsync(`devices/${deviceId}/#`, { qos: 1 });
    const payload = Buffer.alloc(64, 7);
    const before = cpuMs(child.pid as number);
    let inflight: Promise<unknown>[] = [];
    for (let i = 0; i < MESSAGES; i++) {
      inflight.push(client.publishAsync(`devices/${deviceId}/t`, payload, { qos: 1 }));
      if (inflight.length === 100) {
        await Promise.all(inflight);
        inflight = [];
      }
    }
    await Promise.all(inflight);
    await all;
    const used = cpuMs(child.pid as number) - before;
    const rssAfter = rssMb(child.pid as number);
    await client.endAsync();
    return { usPerMessage: (used * 1000) / MESSAGES, rssAfter };
  } finally {
    const done = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await done;
  }
}

function build(): { gateway: boolean } {
  if (process.env.BENCH_NO_BUILD === '1') return { gateway: existsSync(GATEWAY_BIN) };
  // tsc exits non-zero on any type error anywhere but still emits; what matters is the output.
  spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'ignore' });
  if (!existsSync(DIST_BIN)) throw new Error('npm run build produced no dist/runtime/cli/bin.js');
  const g = spawnSync('npm', ['run', '--silent', 'build:gateway'], { cwd: ROOT, encoding: 'utf8' });
  if (g.status !== 0)
    console.log(`gateway bundle not built (${(g.stderr || g.stdout).trim().split('\n')[0]})`);
  return { gateway: g.status === 0 && existsSync(GATEWAY_BIN) };
}

/** A data dir holding a real identity: swtpm + in-process issuer, the built agent attests once. */
async function fillDataDir(
  dir: string,
): Promise<{ config: string; socket: string; stop: () => Promise<void> }> {
  const swtpm = await launchSwtpm();
  const { issuer, files } = await startTpmIssuer(dir, {
    roots: [swtpm.root],
    intermediates: [swtpm.intermediate],
    pcrSelection: PCRS,
  });
  const data = join(dir, 'data');
  const config = join(dir, 'agent.yaml');
  // As the shipped agent.yaml: a policy file (here the default policy written out).
  const policy = join(dir, 'policy.yaml');
  writeFileSync(
    policy,
    'version: 1\nrules:\n  - match: "{self}/device/*"\n    clientId: device\n    publish: ["devices/{device}/#"]\n    subscribe: ["devices/{device}/#"]\n    retain: ["devices/{device}/#"]\n',
  );
  writeFileSync(
    config,
    [
      'version: 2',
      'trustDomain: fleet.example',
      `dataDir: ${data}`,
      `tpm: ${swtpm.spec}`,
      `attestation: { method: tpm, pcrs: "${PCRS}" }`,
      `upstream: { endpoints: ["${issuer.url}"], caFile: ${files.paths.caCertificate}, timeout: 2s }`,
      `broker: { listen: { port: 0 }, enrollment: { port: 0 }, policyFile: ${policy} }`,
      'log: { level: warn }',
      '',
    ].join('\n'),
  );
  const socket = join(data, 'admin.sock');
  await runOnce({ name: 'first attestation', args: [DIST_BIN] }, config, socket, 0);
  await issuer.close(); // from here on the upstream refuses connections: offline
  return { config, socket, stop: () => swtpm.stop() };
}

/** Packages the idle agent imported (ESM loader hook; a separate run, not measured). */
async function loadedPackages(config: string, socket: string, dir: string): Promise<string[]> {
  const log = join(dir, 'loaded.txt');
  const hooks = `import { appendFileSync } from 'node:fs';
export async function load(url, ctx, next) { appendFileSync(${JSON.stringify(log)}, url + '\\n'); return next(url, ctx); }`;
  const register = `data:text/javascript,${encodeURIComponent(
    `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`,
  )}`;
  await runOnce({ name: 'hooked', args: ['--import', register, DIST_BIN] }, config, socket, 1000);
  const names = new Set<string>();
  for (const url of readFileSync(log, 'utf8').split('\n')) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (m?.[1] !== undefined) names.add(m[1]);
  }
  return [...names].sort();
}

export default async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-bench-agent-'));
  let stopTpm: (() => Promise<void>) | undefined;
  try {
    const sealed: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < 7; i++) {
      plain.push(await storeRound(dir, false));
      sealed.push(await storeRound(dir, true));
    }
    const s = median(sealed);
    const p = median(plain);
    console.log('store: 1,000 device records, one batch write + close + reopen + reload (classic-level)');
    console.log(`  sealed store (CBOR + AES-256-GCM)   ${s.toFixed(1)} ms`);
    console.log(`  plain LevelDB + CBOR (naive)        ${p.toFixed(1)} ms`);
    console.log(`  ratio sealed / plain                ${(s / p).toFixed(2)}×`);

    const built = build();
    // BENCH_AGENT_FLAGS="--flag ..." tries other launch flags in place of the unit's.
    const flags =
      process.env.BENCH_AGENT_FLAGS !== undefined
        ? process.env.BENCH_AGENT_FLAGS.split(/\s+/).filter((f) => f !== '')
        : unitNodeFlags(readFileSync(UNIT, 'utf8'));
    const filled = await fillDataDir(dir);
    stopTpm = filled.stop;
    const unitEnv = unitEnvironment(readFileSync(UNIT, 'utf8'));
    const envText = Object.entries(unitEnv)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    const variants: Variant[] = [
      { name: 'dist/, plain node', args: [DIST_BIN] },
      {
        name: `dist/, unit flags ${flags.join(' ') || '(none)'} ${envText}`,
        args: [...flags, DIST_BIN],
        env: { ...process.env, ...unitEnv },
      },
      ...(built.gateway
        ? [
            {
              // For the decision: glibc keeps the memory freed after parsing the 1.5 MB bundle
              // unless told to trim (the unit's MALLOC_TRIM_THRESHOLD_).
              name: `gateway bundle, unit flags, without the unit's environment`,
              args: [...flags, GATEWAY_BIN],
            },
            {
              name: `gateway bundle, as shipped (unit flags and environment)`,
              args: [...flags, GATEWAY_BIN],
              env: { ...process.env, ...unitEnv },
            },
          ]
        : []),
    ];
    const bare: number[] = [];
    const starts = variants.map(() => [] as number[]);
    const rss = variants.map(() => [] as number[]);
    for (let i = 0; i < ROUNDS; i++) {
      const t0 = performance.now();
      await new Promise((r) => spawn(process.execPath, ['-e', '0']).once('exit', r));
      bare.push(performance.now() - t0);
      for (const [k, v] of variants.entries()) {
        const r = await runOnce(v, filled.config, filled.socket, 2000);
        starts[k]?.push(r.ms);
        rss[k]?.push(r.rss);
      }
    }
    const b = median(bare);
    const pad = Math.max(...variants.map((v) => v.name.length)) + 2;
    console.log(
      `offline restart (swtpm, issuer down, broker up), medians of ${ROUNDS} alternated rounds; spawn → serving cached SVID, RSS 2 s after`,
    );
    console.log(`  ${'bare node -e 0'.padEnd(pad)}${b.toFixed(0).padStart(6)} ms`);
    for (const [k, v] of variants.entries()) {
      const st = median(starts[k] ?? []);
      const mb = median(rss[k] ?? []);
      console.log(
        `  ${v.name.padEnd(pad)}${st.toFixed(0).padStart(6)} ms  ${(st / 1000).toFixed(2)}× goal 1 s  ${(st / b).toFixed(1)}× bare   ` +
          `RSS ${mb.toFixed(1)} MB  ${(mb / 60).toFixed(2)}× goal 60 MB ${mb <= 60 ? 'met' : 'MISSED'}`,
      );
    }
    const cpu = variants.map(() => [] as number[]);
    const loaded = variants.map(() => [] as number[]);
    for (let i = 0; i < ROUNDS; i++)
      for (const [k, v] of variants.entries()) {
        const r = await loadRound(v, filled.config, filled.socket, `bench-${k}-${i}`);
        cpu[k]?.push(r.usPerMessage);
        loaded[k]?.push(r.rssAfter);
      }
    const base = median(cpu[0] ?? []);
    console.log(
      `throughput guard: ${MESSAGES} QoS 1 messages of 64 bytes, one device publishing to itself, agent CPU (utime+stime)`,
    );
    for (const [k, v] of variants.entries()) {
      const c = median(cpu[k] ?? []);
      console.log(
        `  ${v.name.padEnd(pad)}${c.toFixed(1).padStart(6)} µs/message  ${(c / base).toFixed(2)}× plain node   RSS after load ${median(loaded[k] ?? []).toFixed(1)} MB`,
      );
    }
    console.log(
      `packages loaded by the idle agent: ${(await loadedPackages(filled.config, filled.socket, dir)).join(', ')}`,
    );
  } finally {
    await stopTpm?.();
    rmSync(dir, { recursive: true, force: true });
  }
}
