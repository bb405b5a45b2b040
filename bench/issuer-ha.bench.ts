/**
 * `npm run bench issuer-ha`: end-to-end renewals of tpm gateways, side by side in one run: one
 * replica on LevelDB, one on PostgreSQL, two on PostgreSQL (a throw-away cluster,
 * test/helpers/postgres.ts). Each replica is its own process (`issuer-ha-server.ts`), each
 * scenario's load generator too (`issuer-ha-load.ts`, G gateways on the TypeScript TPM
 * simulator). A renewal is what issue 17 measures: POST /v1/renew/finish on a fresh mTLS
 * connection (full handshake) with a fresh quote the issuer verifies (signature, qualifying data,
 * PCRs against a signed firmware manifest), the SVID signed and the issuance committed (session
 * consumed, gateway record under its version, issued record, next session, audit event).
 * The three scenarios start together (enrolled, warmed up); peak phases (C workers back to back,
 * BENCH_MS) then alternate over them BENCH_ROUNDS times and the medians are reported (the method
 * of BENCHMARKS.md on a shared machine), with the PostgreSQL/LevelDB ratios of the paired rounds;
 * then one open loop each at 80 % of its median peak, and the TLS+HTTP floor. Printed:
 * renewals/s, p50/p99, the replicas' CPU seconds from /proc and renewals per issuer CPU-second,
 * the load generator's CPU, store calls and PostgreSQL round trips per renewal, p50/p99 at 80 %.
 * BENCH_PROFILE=dir: each replica's V8 CPU profile of its last peak phase,
 * dir/<scenario>-<replica>.cpuprofile (summarise with `bench/cpuprofile.ts`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../runtime/core/clock.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { signManifest } from '../runtime/firmware/manifest.ts';
import { createDevIssuerFiles } from '../runtime/issuer/dev.ts';
import { migratePostgresStore } from '../runtime/issuer/store-postgres.ts';
import { openSimTransport } from '../sim/tpm/index.ts';
import { INTERMEDIATE_CA_FILE, ROOT_CA_FILE } from '../sim/tpm/store.ts';
import { startPostgres } from '../test/helpers/postgres.ts';
import { cpuMs } from './process.ts';
import { median } from './stats.ts';

const MS = Number(process.env.BENCH_MS ?? 3000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1500);
const GATEWAYS = Number(process.env.BENCH_GATEWAYS ?? 48);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const POOL = Number(process.env.BENCH_POOL ?? 16);
const PROFILE = process.env.BENCH_PROFILE;
const PCR_SELECTION = 'sha256:0,1,2,3,4,5,6,7';
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

interface Child {
  proc: ChildProcess;
  lines: AsyncIterator<string>;
}

/** Every child this run started, killed at the end whatever happened. */
const children = new Set<ChildProcess>();

function child(file: string, arg: unknown, flags: string[] = []): Child {
  const proc = spawn(process.execPath, [...flags, '--import', 'tsx', here(file), JSON.stringify(arg)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  const lines = createInterface({ input: proc.stdout as NonNullable<typeof proc.stdout> })[
    Symbol.asyncIterator
  ]();
  return { proc, lines };
}

async function line<T>(c: Child, what: string): Promise<T> {
  const r = await c.lines.next();
  if (r.done === true) throw new Error(`${what} exited before answering`);
  return JSON.parse(r.value) as T;
}

interface Phase {
  renewals: number;
  seconds: number;
  p50: number;
  p99: number;
  errors: number;
}

interface Peak extends Phase {
  /** The replicas' CPU seconds, and the load generator's (near its wall time: it is the bound). */
  cpuS: number;
  loadCpuS: number;
  /** Store calls by kind and PostgreSQL round trips, all replicas. */
  calls: Record<string, number>;
}

interface Setup {
  dev: string;
  server: Record<string, unknown>;
}

/** One scenario's replicas and load generator, enrolled, warmed up, waiting for phases. */
interface Running {
  name: string;
  servers: Child[];
  load: Child;
  exited: Promise<unknown>[];
  peaks: Peak[];
}

async function start(name: string, slug: string, setup: Setup, stores: unknown[], tpmDirs: string[]) {
  if (PROFILE !== undefined) mkdirSync(PROFILE, { recursive: true });
  const servers = stores.map((store, i) =>
    child('issuer-ha-server.ts', {
      ...setup.server,
      dir: setup.dev,
      store,
      poolSize: POOL,
      ...(PROFILE === undefined ? {} : { profile: join(PROFILE, `${slug}-${i}.cpuprofile`) }),
    }),
  );
  const exited = servers.map((s) => new Promise((r) => s.proc.once('exit', r)));
  const ready = await Promise.all(servers.map((s) => line<{ url: string }>(s, 'issuer replica')));
  const load = child('issuer-ha-load.ts', {
    urls: ready.map((r) => r.url),
    tpmDirs,
    ca: readFileSync(join(setup.dev, 'ca.pem'), 'utf8'),
    concurrency: CONCURRENCY,
    ms: MS,
    warmupMs: WARMUP_MS,
  });
  exited.push(new Promise((r) => load.proc.once('exit', r)));
  await line(load, 'load generator');
  const r: Running = { name, servers, load, exited, peaks: [] };
  return r;
}

const cpuOf = (r: Running) => r.servers.reduce((sum, s) => sum + cpuMs(s.proc.pid as number), 0);
const tell = (r: Running, cmd: string) => {
  for (const s of r.servers) s.proc.stdin?.write(`${cmd}\n`);
};

/** One peak phase, the replicas counting store calls (and profiling, with BENCH_PROFILE). */
async function peak(r: Running): Promise<void> {
  tell(r, 'profile');
  const load0 = cpuMs(r.load.proc.pid as number);
  const cpu0 = cpuOf(r);
  r.load.proc.stdin?.write('peak\n');
  const p = await line<Phase>(r.load, 'load generator');
  const cpuS = (cpuOf(r) - cpu0) / 1000;
  const loadCpuS = (cpuMs(r.load.proc.pid as number) - load0) / 1000;
  tell(r, 'stop');
  const counts = await Promise.all(r.servers.map((s) => line<Record<string, number>>(s, 'issuer replica')));
  const calls: Record<string, number> = {};
  for (const c of counts) for (const [k, v] of Object.entries(c)) calls[k] = (calls[k] ?? 0) + v;
  r.peaks.push({ ...p, cpuS, loadCpuS, calls });
}

/** A `steady R` or `floor` phase: its result and requests per replica CPU-second. */
async function phase(r: Running, cmd: string): Promise<Phase & { perCpuS: number }> {
  const cpu0 = cpuOf(r);
  r.load.proc.stdin?.write(`${cmd}\n`);
  const p = await line<Phase>(r.load, 'load generator');
  return { ...p, perCpuS: p.renewals / Math.max((cpuOf(r) - cpu0) / 1000, 0.001) };
}

async function stop(r: Running): Promise<void> {
  r.load.proc.stdin?.write('exit\n');
  for (const s of r.servers) s.proc.kill('SIGTERM');
  await Promise.all(r.exited);
}

/**
 * G simulated TPMs (ECC EK only), provisioned once, then copied for each scenario (a simulator's
 * state directory is locked by the process that opens it, and the scenarios run side by side).
 */
async function provisionTpms(dir: string, copies: string[]): Promise<Record<string, string[]>> {
  const dirs = Array.from({ length: GATEWAYS }, (_, i) => join(dir, 'base', `tpm-${i}`));
  for (const d of dirs) {
    mkdirSync(d, { recursive: true, mode: 0o700 });
    await (await openSimTransport(d, { ekTypes: ['ecc'] })).close();
  }
  const out: Record<string, string[]> = {};
  for (const c of copies) {
    cpSync(join(dir, 'base'), join(dir, c), { recursive: true });
    out[c] = dirs.map((_, i) => join(dir, c, `tpm-${i}`));
  }
  return out;
}

const rate = (p: Phase) => p.renewals / p.seconds;
const perCpuS = (p: Peak) => p.renewals / Math.max(p.cpuS, 0.001);

function report(
  running: Running[],
  steady: (Phase & { perCpuS: number })[],
  floor: Phase & { perCpuS: number },
) {
  const f = (x: number, w: number, d = 0) => x.toFixed(d).padStart(w);
  const m = (r: Running, fn: (p: Peak) => number) => median(r.peaks.map(fn));
  console.log(
    `issuer renewals end to end (tpm gateways on the TS simulator: mTLS full handshake, fresh quote verified against a signed manifest, SVID signed, committed); ${GATEWAYS} gateways, ${CONCURRENCY} workers, ${MS} ms per phase, pool ${POOL}; peak: median of ${ROUNDS} alternated rounds`,
  );
  console.log(
    '                          peak/s  p50 ms  p99 ms  issuer CPU s  per CPU-s  load CPU s │ at 80 %: /s  p50 ms  p99 ms  per CPU-s',
  );
  running.forEach((r, i) => {
    const s = steady[i] as Phase & { perCpuS: number };
    console.log(
      `  ${r.name.padEnd(22)}${f(m(r, rate), 8)}${f(
        m(r, (p) => p.p50),
        8,
        1,
      )}${f(
        m(r, (p) => p.p99),
        8,
        1,
      )}${f(
        m(r, (p) => p.cpuS),
        14,
        2,
      )}${f(m(r, perCpuS), 11)}${f(
        m(r, (p) => p.loadCpuS),
        12,
        2,
      )} │${f(rate(s), 12)}${f(s.p50, 8, 1)}${f(s.p99, 8, 1)}${f(s.perCpuS, 11)}`,
    );
  });
  console.log('  per renewal (peak phases):');
  for (const r of running) {
    const calls: Record<string, number> = {};
    for (const p of r.peaks) for (const [k, v] of Object.entries(p.calls)) calls[k] = (calls[k] ?? 0) + v;
    const n = r.peaks.reduce((sum, p) => sum + p.renewals + p.errors, 0);
    const per = Object.entries(calls)
      .sort()
      .map(([k, v]) => `${k} ${(v / Math.max(1, n)).toFixed(2)}`);
    console.log(`    ${r.name.padEnd(24)}${per.join(', ')}`);
  }
  const [level, one, two] = running as [Running, Running, Running];
  const paired = (a: Running, b: Running, fn: (p: Peak) => number) =>
    a.peaks.map((p, i) => fn(p) / fn(b.peaks[i] as Peak));
  const span = (xs: number[]) =>
    `${median(xs).toFixed(2)}x (rounds ${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;
  console.log(`  PostgreSQL / LevelDB, per CPU-s      ${span(paired(one, level, perCpuS))} (goal >= 0.8x)`);
  console.log(`  PostgreSQL / LevelDB, renewals/s     ${span(paired(one, level, rate))}`);
  console.log(`  two replicas / one, renewals/s       ${span(paired(two, one, rate))}`);
  const share = m(level, perCpuS) / floor.perCpuS;
  console.log(
    `  TLS+HTTP floor (GET /v1/bundle, fresh mTLS connection, LevelDB replica): ${floor.perCpuS.toFixed(0)} per issuer CPU-s = ${(100 * share).toFixed(0)} % of a LevelDB renewal's issuer CPU`,
  );
  const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
  console.log(
    `  goal >= 500 renewals per issuer CPU-s: ${running.map((r) => `${met(m(r, perCpuS) >= 500)} (${r.name})`).join(', ')}`,
  );
  console.log(
    `  goal p99 <= 50 ms at 80 % of peak:    ${running.map((r, i) => `${met((steady[i] as Phase).p99 <= 50)} (${r.name})`).join(', ')}`,
  );
  const errors = [...running.flatMap((r) => r.peaks), ...steady, floor].reduce((sum, p) => sum + p.errors, 0);
  if (errors > 0) throw new Error(`${errors} renewals failed during the run`);
}

export default async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'issuer-ha-'));
  const dev = join(dir, 'dev');
  await createDevIssuerFiles(dev, { trustDomain: 'fleet.example', clock: systemClock, random: cryptoRandom });
  const tpm = await provisionTpms(join(dir, 'tpm'), ['level', 'pg1', 'pg2']);
  const dirs0 = tpm.level as string[];
  const vendor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const zeros: Record<number, string> = {};
  for (let i = 0; i < 8; i++) zeros[i] = '00'.repeat(32);
  const setup: Setup = {
    dev,
    server: {
      tpm: {
        roots: dirs0.map((d) => join(d, ROOT_CA_FILE)),
        intermediates: dirs0.map((d) => join(d, INTERMEDIATE_CA_FILE)),
        pcrSelection: PCR_SELECTION,
      },
      manifest: signManifest(
        { version: '1.0.0', bank: 'sha256', pcrs: zeros },
        vendor.privateKey,
        Date.now(),
      ),
      firmwareKey: vendor.publicKey.export({ format: 'pem', type: 'spki' }),
    },
  };
  const pg = await startPostgres();
  try {
    const db = async (name: string) => {
      await pg.sql(`CREATE DATABASE ${name}`);
      const url = pg.url(name);
      await migratePostgresStore({ url });
      return url;
    };
    const two = await db('ha_two');
    const running = await Promise.all([
      start('1 replica, LevelDB', 'level', setup, [{ leveldb: join(dir, 'level') }], tpm.level as string[]),
      start('1 replica, PostgreSQL', 'pg1', setup, [{ postgres: await db('ha_one') }], tpm.pg1 as string[]),
      start(
        '2 replicas, PostgreSQL',
        'pg2',
        setup,
        [{ postgres: two }, { postgres: two }],
        tpm.pg2 as string[],
      ),
    ]);
    try {
      // Peak phases alternated over the scenarios, ROUNDS times; medians reported.
      for (let round = 0; round < ROUNDS; round++) for (const r of running) await peak(r);
      const steady: (Phase & { perCpuS: number })[] = [];
      for (const r of running)
        steady.push(await phase(r, `steady ${(0.8 * median(r.peaks.map(rate))).toFixed(1)}`));
      const floor = await phase(running[0] as Running, 'floor');
      report(running, steady, floor);
    } finally {
      await Promise.all(running.map(stop));
    }
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
