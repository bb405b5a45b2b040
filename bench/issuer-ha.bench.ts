/**
 * `npm run bench issuer-ha`: end-to-end renewals of tpm gateways, side by side in one run: one
 * replica on LevelDB, one on PostgreSQL, two on PostgreSQL (a throw-away cluster,
 * test/helpers/postgres.ts). Each replica is its own process (`issuer-ha-server.ts`), the load
 * generator too (`issuer-ha-load.ts`, G gateways on the TypeScript TPM simulator). A renewal is
 * what issue 17 measures: POST /v1/renew/finish on a fresh mTLS connection (full handshake) with
 * a fresh quote the issuer verifies (signature, qualifying data, PCRs against a signed firmware
 * manifest), the SVID signed and the issuance committed (session consumed, gateway record under
 * its version, issued record, next session, audit event).
 * Per scenario: a peak phase (C workers back to back, BENCH_MS) then an open loop at 80 % of that
 * peak (BENCH_MS). Printed: renewals/s, p50/p99, the replicas' CPU seconds from /proc during the
 * peak and renewals per issuer CPU-second, p50/p99 at 80 % of peak, and the ratios.
 * BENCH_PROFILE=dir: each replica's V8 CPU profile of the peak phase, dir/<scenario>-<replica>.cpuprofile.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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

const MS = Number(process.env.BENCH_MS ?? 5000);
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

function child(file: string, arg: unknown, flags: string[] = []): Child {
  const proc = spawn(process.execPath, [...flags, '--import', 'tsx', here(file), JSON.stringify(arg)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
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

interface Result {
  name: string;
  peak: Phase;
  steady: Phase;
  cpuS: number;
  /** The load generator's CPU seconds in the peak phase (near its wall time: it is the bound). */
  loadCpuS: number;
  perCpuS: number;
  /** Renewals per issuer CPU-second at 80 % of peak. */
  steadyPerCpuS: number;
  /** GET /v1/bundle on fresh mTLS connections per issuer CPU-second (the TLS + HTTP floor). */
  floorPerCpuS?: number;
  /** Store calls by kind and PostgreSQL round trips during the peak phase, all replicas. */
  calls: Record<string, number>;
}

interface Setup {
  dev: string;
  tpmDirs: string[];
  server: Record<string, unknown>;
}

async function scenario(
  name: string,
  slug: string,
  setup: Setup,
  stores: unknown[],
  floor = false,
): Promise<Result> {
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
  const tell = (cmd: string) => {
    for (const s of servers) s.proc.stdin?.write(`${cmd}\n`);
  };
  const exited = servers.map((s) => new Promise((r) => s.proc.once('exit', r)));
  try {
    const ready = await Promise.all(servers.map((s) => line<{ url: string }>(s, 'issuer replica')));
    const load = child('issuer-ha-load.ts', {
      urls: ready.map((r) => r.url),
      tpmDirs: setup.tpmDirs,
      ca: readFileSync(join(setup.dev, 'ca.pem'), 'utf8'),
      concurrency: CONCURRENCY,
      ms: MS,
      warmupMs: WARMUP_MS,
      floor,
    });
    const cpu = () => servers.reduce((sum, s) => sum + cpuMs(s.proc.pid as number), 0);
    await line(load, 'load generator');
    tell('profile');
    const load0 = cpuMs(load.proc.pid as number);
    const cpu0 = cpu();
    const peak = await line<Phase>(load, 'load generator');
    const cpuS = (cpu() - cpu0) / 1000;
    const loadCpuS = (cpuMs(load.proc.pid as number) - load0) / 1000;
    tell('stop');
    const counts = await Promise.all(servers.map((s) => line<Record<string, number>>(s, 'issuer replica')));
    const calls: Record<string, number> = {};
    for (const c of counts) for (const [k, v] of Object.entries(c)) calls[k] = (calls[k] ?? 0) + v;
    const cpu1 = cpu();
    const steady = await line<Phase>(load, 'load generator');
    const cpu2 = cpu();
    const f = floor ? await line<Phase>(load, 'load generator') : undefined;
    const floorPerCpuS = f === undefined ? undefined : f.renewals / Math.max((cpu() - cpu2) / 1000, 0.001);
    await new Promise((r) => load.proc.once('exit', r));
    return {
      name,
      peak,
      steady,
      cpuS,
      loadCpuS,
      perCpuS: peak.renewals / Math.max(cpuS, 0.001),
      steadyPerCpuS: steady.renewals / Math.max((cpu2 - cpu1) / 1000, 0.001),
      calls,
      ...(floorPerCpuS === undefined ? {} : { floorPerCpuS }),
    };
  } finally {
    for (const s of servers) s.proc.kill('SIGTERM');
    await Promise.all(exited);
  }
}

/** G simulated TPMs (ECC EK only), provisioned once; every scenario's load generator reopens them. */
async function provisionTpms(dir: string): Promise<string[]> {
  const dirs = Array.from({ length: GATEWAYS }, (_, i) => join(dir, `tpm-${i}`));
  for (const d of dirs) {
    mkdirSync(d, { recursive: true, mode: 0o700 });
    await (await openSimTransport(d, { ekTypes: ['ecc'] })).close();
  }
  return dirs;
}

const rate = (p: Phase) => p.renewals / p.seconds;

export default async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'issuer-ha-'));
  const dev = join(dir, 'dev');
  await createDevIssuerFiles(dev, { trustDomain: 'fleet.example', clock: systemClock, random: cryptoRandom });
  const tpmDirs = await provisionTpms(join(dir, 'tpm'));
  const vendor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const zeros: Record<number, string> = {};
  for (let i = 0; i < 8; i++) zeros[i] = '00'.repeat(32);
  const setup: Setup = {
    dev,
    tpmDirs,
    server: {
      tpm: {
        roots: tpmDirs.map((d) => join(d, ROOT_CA_FILE)),
        intermediates: tpmDirs.map((d) => join(d, INTERMEDIATE_CA_FILE)),
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
    const results: Result[] = [];
    results.push(
      await scenario('1 replica, LevelDB', 'level', setup, [{ leveldb: join(dir, 'level') }], true),
    );
    results.push(await scenario('1 replica, PostgreSQL', 'pg1', setup, [{ postgres: await db('ha_one') }]));
    const two = await db('ha_two');
    results.push(
      await scenario('2 replicas, PostgreSQL', 'pg2', setup, [{ postgres: two }, { postgres: two }]),
    );
    console.log(
      `issuer renewals end to end (tpm gateways on the TS simulator: mTLS full handshake, fresh quote verified against a signed manifest, SVID signed, committed); ${GATEWAYS} gateways, ${CONCURRENCY} workers, ${MS} ms per phase, pool ${POOL}`,
    );
    console.log(
      '                          peak/s  p50 ms  p99 ms  issuer CPU s  per CPU-s  load CPU s │ at 80 %: /s  p50 ms  p99 ms  per CPU-s  errors',
    );
    const f = (x: number, w: number, d = 0) => x.toFixed(d).padStart(w);
    for (const r of results)
      console.log(
        `  ${r.name.padEnd(22)}${f(rate(r.peak), 8)}${f(r.peak.p50, 8, 1)}${f(r.peak.p99, 8, 1)}${f(r.cpuS, 14, 2)}${f(r.perCpuS, 11)}${f(r.loadCpuS, 12, 2)} │${f(rate(r.steady), 12)}${f(r.steady.p50, 8, 1)}${f(r.steady.p99, 8, 1)}${f(r.steadyPerCpuS, 11)}${f(r.peak.errors + r.steady.errors, 8)}`,
      );
    console.log('  per renewal (peak phase):');
    for (const r of results) {
      const per = Object.entries(r.calls)
        .sort()
        .map(([k, v]) => `${k} ${(v / Math.max(1, r.peak.renewals + r.peak.errors)).toFixed(2)}`);
      console.log(`    ${r.name.padEnd(24)}${per.join(', ')}`);
    }
    const [level, one, two2] = results as [Result, Result, Result];
    console.log(
      `  PostgreSQL / LevelDB, per CPU-s      ${(one.perCpuS / level.perCpuS).toFixed(2)}x (goal >= 0.8x)`,
    );
    console.log(`  PostgreSQL / LevelDB, renewals/s     ${(rate(one.peak) / rate(level.peak)).toFixed(2)}x`);
    console.log(`  two replicas / one, renewals/s       ${(rate(two2.peak) / rate(one.peak)).toFixed(2)}x`);
    if (level.floorPerCpuS !== undefined) {
      const share = level.perCpuS / level.floorPerCpuS;
      console.log(
        `  TLS+HTTP floor (GET /v1/bundle, fresh mTLS connection, same replica): ${level.floorPerCpuS.toFixed(0)} per issuer CPU-s = ${(100 * share).toFixed(0)} % of a LevelDB renewal's issuer CPU`,
      );
    }
    const met = (r: Result) => (r.perCpuS >= 500 ? 'met' : 'NOT met');
    console.log(
      `  goal >= 500 renewals per issuer CPU-s: ${met(level)} on LevelDB, ${met(one)} on PostgreSQL, ${met(two2)} on 2x PostgreSQL`,
    );
    const p99 = (r: Result) => (r.steady.p99 <= 50 ? 'met' : 'NOT met');
    console.log(
      `  goal p99 <= 50 ms at 80 % of peak:    ${p99(level)} on LevelDB, ${p99(one)} on PostgreSQL, ${p99(two2)} on 2x PostgreSQL`,
    );
    if (results.some((r) => r.peak.errors + r.steady.errors > 0))
      throw new Error('renewals failed during the run');
  } finally {
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
