/**
 * `npm run bench agent`: the gateway agent, measured on the BUILT code that gateways run.
 *
 * 1. Store: write 1,000 device records in one atomic batch and reload them, through the sealed
 *    store (CBOR + AES-256-GCM per value) side by side with plain LevelDB + CBOR (the naive way,
 *    no sealing), both on classic-level; medians of 7 alternated rounds, ratio printed.
 * 2. Builds `dist/` (`npm run build`) and the gateway bundle (`npm run build:gateway`) first
 *    (BENCH_NO_BUILD=1 skips that), then fills one data dir per variant the production way: a real
 *    swtpm each, an in-process issuer trusting their EK CAs, `node dist/runtime/cli/bin.js agent
 *    --config` attesting once; the config has a broker policy file, as the shipped agent.yaml
 *    does. The issuer then stops: upstream offline (connection refused).
 * 3. Offline restart, side by side in alternated rounds: spawn → the admin socket reports a valid
 *    cached SVID (goal ≤ 1 s), for dist/ with plain `node`, for dist/ and the gateway bundle as
 *    the shipped systemd unit launches them (its node flags and `Environment=` lines, read from
 *    firmware-hooks/build/edgeward.service; BENCH_AGENT_FLAGS / BENCH_AGENT_ENV="K=V ..." try
 *    others), with a bare `node -e 0` alongside for scale; RSS 2 s after serving (start-up).
 *    Every agent runs with the environment a unit gives, not the caller's (no NODE_OPTIONS,
 *    NODE_EXTRA_CA_CERTS...): PATH, plus the unit's lines for the shipped variants.
 * 4. Idle RSS (goal ≤ 60 MB): the agent at steady idle, BENCH_AGENT_IDLE_S (20) s after serving —
 *    V8's memory reducer compacts the start-up heap some 8–12 s after start (RSS 2 s after serving
 *    is 3–4 MB higher and not what an agent that runs for months holds). To keep the run short the
 *    variants idle at the same time, each on its own data dir and swtpm (all filled in step 2).
 *    Medians of BENCH_AGENT_ROUNDS (default 3).
 * 5. Throughput guard for the launch flags: per variant, one device enrolled over the agent's
 *    enrollment listener (join token from the admin socket) publishes BENCH_AGENT_MESSAGES (5,000)
 *    QoS 1 messages to itself through the agent's broker; the agent's CPU per message (utime +
 *    stime from /proc) and its RSS after the load. A flag that saves idle memory must not cost here.
 * 6. Which packages the idle agent loaded from dist/, and how much of the split gateway bundle
 *    (an ESM loader hook in separate, unmeasured runs).
 */
import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
import { enroll } from '../transport/enroll/est-client.ts';
import { cpuMs, rssMb, unitEnvironment, unitNodeFlags } from './process.ts';
import { median } from './stats.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const DIST_BIN = join(ROOT, 'dist/runtime/cli/bin.js');
const GATEWAY_BIN = join(ROOT, 'dist/gateway/edgeward/edgeward.mjs');
const UNIT = join(ROOT, 'firmware-hooks/build/edgeward.service');
const ROUNDS = Number(process.env.BENCH_AGENT_ROUNDS ?? 3);
const PCRS = 'sha256:0,1,2,3,4,5,6,7';
const MESSAGES = Number(process.env.BENCH_AGENT_MESSAGES ?? 5000);
const IDLE_MS = Number(process.env.BENCH_AGENT_IDLE_S ?? 20) * 1000;
/** What a systemd unit gives a service beyond its own `Environment=` lines. */
const UNIT_BASE_ENV: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
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

/** `K=V K2=V2` → `{ K: 'V', K2: 'V2' }` (BENCH_AGENT_ENV). */
function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    const eq = word.indexOf('=');
    if (eq > 0) env[word.slice(0, eq)] = word.slice(eq + 1);
  }
  return env;
}

interface Variant {
  readonly name: string;
  readonly args: string[];
  readonly env: NodeJS.ProcessEnv;
}

/** One filled data dir: its agent config and admin socket. */
interface Filled {
  readonly config: string;
  readonly socket: string;
}

/** Spawn the agent, time spawn → serving, optionally read its RSS after `idleMs`, stop it. */
async function runOnce(
  v: Variant,
  config: string,
  socket: string,
  idleMs: number,
): Promise<{ ms: number; rss: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [...v.args, 'agent', '--config', config], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: v.env,
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

/** CPU per QoS 1 message through the running agent's broker (one device publishing to itself). */
async function loadRound(
  v: Variant,
  config: string,
  socket: string,
  deviceId: string,
): Promise<{ usPerMessage: number; rssAfter: number }> {
  const child = spawn(process.execPath, [...v.args, 'agent', '--config', config], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: v.env,
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
      deviceId,
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

/** `n` data dirs, each with a real identity: its own swtpm, one in-process issuer, attested once. */
async function fillDataDirs(
  dir: string,
  n: number,
): Promise<{ filled: Filled[]; stop: () => Promise<void> }> {
  const tpms = await Promise.all(Array.from({ length: n }, () => launchSwtpm()));
  const stop = async () => {
    await Promise.all(tpms.map((t) => t.stop()));
  };
  try {
    const { issuer, files } = await startTpmIssuer(dir, {
      roots: tpms.map((t) => t.root),
      intermediates: tpms.map((t) => t.intermediate),
      pcrSelection: PCRS,
    });
    // As the shipped agent.yaml: a policy file (here the default policy written out).
    const policy = join(dir, 'policy.yaml');
    writeFileSync(
      policy,
      'version: 1\nrules:\n  - match: "{self}/device/*"\n    clientId: device\n    publish: ["devices/{device}/#"]\n    subscribe: ["devices/{device}/#"]\n    retain: ["devices/{device}/#"]\n',
    );
    const filled: Filled[] = [];
    for (const [i, swtpm] of tpms.entries()) {
      const data = join(dir, `data-${i}`);
      const config = join(dir, `agent-${i}.yaml`);
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
      const first: Variant = { name: 'first attestation', args: [DIST_BIN], env: UNIT_BASE_ENV };
      await runOnce(first, config, socket, 0);
      filled.push({ config, socket });
    }
    await issuer.close(); // from here on the upstream refuses connections: offline
    return { filled, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** One idle round: every variant at once, each on its own data dir; RSS after IDLE_MS serving. */
async function idleRound(variants: readonly Variant[], filled: readonly Filled[]): Promise<number[]> {
  const children = variants.map((v, k) =>
    spawn(process.execPath, [...v.args, 'agent', '--config', (filled[k] as Filled).config], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: v.env,
    }),
  );
  try {
    await Promise.all(
      filled.slice(0, variants.length).map((f) => waitServing(f.socket, performance.now() + 30_000)),
    );
    await new Promise((r) => setTimeout(r, IDLE_MS));
    return children.map((c) => rssMb(c.pid as number));
  } finally {
    await Promise.all(
      children.map((c) => {
        const done = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        return done;
      }),
    );
  }
}

/** The module URLs the idle agent loaded (ESM loader hook; a separate run, not measured). */
async function loadedUrls(script: string, config: string, socket: string, dir: string): Promise<string[]> {
  const log = join(dir, `loaded-${Math.random()}.txt`);
  const hooks = `import { appendFileSync } from 'node:fs';
export async function load(url, ctx, next) { appendFileSync(${JSON.stringify(log)}, url + '\\n'); return next(url, ctx); }`;
  const register = `data:text/javascript,${encodeURIComponent(
    `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`,
  )}`;
  const hooked: Variant = { name: 'hooked', args: ['--import', register, script], env: UNIT_BASE_ENV };
  await runOnce(hooked, config, socket, 1000);
  return readFileSync(log, 'utf8').split('\n');
}

/** Packages among `urls` (dist/ imports them from node_modules/). */
function packagesOf(urls: readonly string[]): string[] {
  const names = new Set<string>();
  for (const url of urls) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (m?.[1] !== undefined) names.add(m[1]);
  }
  return [...names].sort();
}

/** How much of the split gateway bundle (edgeward.mjs + lib/*.mjs) the idle agent loaded. */
function bundleShare(urls: readonly string[]): string {
  const root = dirname(GATEWAY_BIN);
  const all = [
    'edgeward.mjs',
    ...readdirSync(join(root, 'lib'))
      .filter((f) => f.endsWith('.mjs'))
      .map((f) => `lib/${f}`),
  ];
  const loaded = new Set(urls.filter((u) => u.startsWith('file:')).map((u) => fileURLToPath(u)));
  const size = (files: string[]) => files.reduce((n, f) => n + statSync(join(root, f)).size, 0) / 1024;
  const used = all.filter((f) => loaded.has(join(root, f)));
  return `${used.length} of ${all.length} files, ${size(used).toFixed(0)} of ${size(all).toFixed(0)} KB`;
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
    const unitText = readFileSync(UNIT, 'utf8');
    const flags =
      process.env.BENCH_AGENT_FLAGS !== undefined
        ? process.env.BENCH_AGENT_FLAGS.split(/\s+/).filter((f) => f !== '')
        : unitNodeFlags(unitText);
    const unitEnv =
      process.env.BENCH_AGENT_ENV !== undefined
        ? parseEnv(process.env.BENCH_AGENT_ENV)
        : unitEnvironment(unitText);
    const shippedEnv = { ...UNIT_BASE_ENV, ...unitEnv };
    const launch = `${flags.join(' ') || '(no flags)'} ${Object.entries(unitEnv)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`;
    const variants: Variant[] = [
      { name: 'dist/, plain node', args: [DIST_BIN], env: UNIT_BASE_ENV },
      { name: 'dist/, as shipped', args: [...flags, DIST_BIN], env: shippedEnv },
      ...(built.gateway
        ? [{ name: 'gateway bundle, as shipped', args: [...flags, GATEWAY_BIN], env: shippedEnv }]
        : []),
    ];
    const prepared = await fillDataDirs(dir, variants.length);
    stopTpm = prepared.stop;
    const filled = prepared.filled[0] as Filled;
    const bare: number[] = [];
    const starts = variants.map(() => [] as number[]);
    const startRss = variants.map(() => [] as number[]);
    for (let i = 0; i < ROUNDS; i++) {
      const t0 = performance.now();
      await new Promise((r) => spawn(process.execPath, ['-e', '0']).once('exit', r));
      bare.push(performance.now() - t0);
      for (const [k, v] of variants.entries()) {
        const r = await runOnce(v, filled.config, filled.socket, 2000);
        starts[k]?.push(r.ms);
        startRss[k]?.push(r.rss);
      }
    }
    const idle = variants.map(() => [] as number[]);
    for (let i = 0; i < ROUNDS; i++)
      for (const [k, mb] of (await idleRound(variants, prepared.filled)).entries()) idle[k]?.push(mb);
    const b = median(bare);
    const pad = Math.max(...variants.map((v) => v.name.length)) + 2;
    console.log(`as shipped = the unit's launch: ${launch}`);
    console.log(
      `offline restart (swtpm, issuer down, broker up), medians of ${ROUNDS} alternated rounds; spawn → serving cached SVID; RSS 2 s after serving (start-up) and at idle, ${IDLE_MS / 1000} s after serving`,
    );
    console.log(`  ${'bare node -e 0'.padEnd(pad)}${b.toFixed(0).padStart(6)} ms`);
    for (const [k, v] of variants.entries()) {
      const st = median(starts[k] ?? []);
      const mb = median(idle[k] ?? []);
      console.log(
        `  ${v.name.padEnd(pad)}${st.toFixed(0).padStart(6)} ms  ${(st / 1000).toFixed(2)}× goal 1 s  ${(st / b).toFixed(1)}× bare   ` +
          `RSS start-up ${median(startRss[k] ?? []).toFixed(1)} MB, idle ${mb.toFixed(1)} MB [${(idle[k] ?? []).map((x) => x.toFixed(1)).join(' ')}]  ` +
          `${(mb / 60).toFixed(2)}× goal 60 MB ${mb <= 60 ? 'met' : 'MISSED'}`,
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
      `packages loaded by the idle agent (dist/): ${packagesOf(await loadedUrls(DIST_BIN, filled.config, filled.socket, dir)).join(', ')}`,
    );
    if (built.gateway)
      console.log(
        `gateway bundle loaded by the idle agent: ${bundleShare(await loadedUrls(GATEWAY_BIN, filled.config, filled.socket, dir))}`,
      );
  } finally {
    await stopTpm?.();
    rmSync(dir, { recursive: true, force: true });
  }
}
