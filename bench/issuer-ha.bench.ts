/**
 * `npm run bench issuer-ha`: end-to-end renewals per second of the issuer, side by side in one
 * run: one replica on LevelDB, one on PostgreSQL, two on PostgreSQL (a throw-away cluster,
 * test/helpers/postgres.ts). Each replica is its own process (`issuer-ha-server.ts`), the load
 * generator too (`issuer-ha-load.ts`): G join-token gateways enrolled, then C workers renewing
 * for BENCH_MS, each renewal one POST /v1/renew/finish on a fresh mTLS connection (the SVID
 * signed, the issuance batch committed: gateway record under its version, issued record, next
 * session, audit event). Printed: renewals/s, p50/p99 latency, the replicas' CPU seconds from
 * /proc and renewals per issuer CPU-second, and the ratios PostgreSQL/LevelDB and two/one.
 * join-token gateways: no TPM quote is verified (the tpm method's quote check is not in here).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../runtime/core/clock.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { createDevIssuerFiles } from '../runtime/issuer/dev.ts';
import { migratePostgresStore } from '../runtime/issuer/store-postgres.ts';
import { startPostgres } from '../test/helpers/postgres.ts';
import { cpuMs } from './process.ts';

const MS = Number(process.env.BENCH_MS ?? 5000);
const GATEWAYS = Number(process.env.BENCH_GATEWAYS ?? 64);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

function child(file: string, arg: unknown): { proc: ChildProcess; lines: AsyncIterator<string> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', here(file), JSON.stringify(arg)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout as NonNullable<typeof proc.stdout> })[
    Symbol.asyncIterator
  ]();
  return { proc, lines };
}

async function line<T>(c: { lines: AsyncIterator<string> }, what: string): Promise<T> {
  const r = await c.lines.next();
  if (r.done === true) throw new Error(`${what} exited before answering`);
  return JSON.parse(r.value) as T;
}

interface Result {
  name: string;
  rate: number;
  p50: number;
  p99: number;
  cpuS: number;
  perCore: number;
  errors: number;
}

async function scenario(name: string, dir: string, stores: unknown[]): Promise<Result> {
  const servers = stores.map((store, i) =>
    child('issuer-ha-server.ts', { dir, store, ...(i === 0 ? { tokens: GATEWAYS } : {}) }),
  );
  try {
    const ready = await Promise.all(
      servers.map((s) => line<{ url: string; tokens: string[] }>(s, 'issuer replica')),
    );
    const load = child('issuer-ha-load.ts', {
      urls: ready.map((r) => r.url),
      tokens: ready[0]?.tokens ?? [],
      ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
      concurrency: CONCURRENCY,
      ms: MS,
    });
    await line(load, 'load generator');
    const cpu0 = servers.map((s) => cpuMs(s.proc.pid as number));
    const r = await line<{ renewals: number; seconds: number; p50: number; p99: number; errors: number }>(
      load,
      'load generator',
    );
    const cpuS =
      servers.reduce((sum, s, i) => sum + (cpuMs(s.proc.pid as number) - (cpu0[i] ?? 0)), 0) / 1000;
    return {
      name,
      rate: r.renewals / r.seconds,
      p50: r.p50,
      p99: r.p99,
      cpuS,
      perCore: r.renewals / Math.max(cpuS, 0.001),
      errors: r.errors,
    };
  } finally {
    for (const s of servers) {
      s.proc.stdin?.end();
      s.proc.kill('SIGTERM');
    }
  }
}

export default async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'issuer-ha-'));
  await createDevIssuerFiles(join(dir, 'dev'), {
    trustDomain: 'fleet.example',
    clock: systemClock,
    random: cryptoRandom,
  });
  const pg = await startPostgres();
  try {
    const db = async (name: string) => {
      await pg.sql(`CREATE DATABASE ${name}`);
      const url = pg.url(name);
      await migratePostgresStore({ url });
      return url;
    };
    const dev = join(dir, 'dev');
    const results: Result[] = [];
    results.push(await scenario('1 replica, LevelDB', dev, [{ leveldb: join(dir, 'level') }]));
    results.push(await scenario('1 replica, PostgreSQL', dev, [{ postgres: await db('ha_one') }]));
    const two = await db('ha_two');
    results.push(await scenario('2 replicas, PostgreSQL', dev, [{ postgres: two }, { postgres: two }]));
    console.log(
      `issuer renewals end to end (mTLS, fresh connection, SVID signed, committed); ${GATEWAYS} gateways, ${CONCURRENCY} workers, ${MS} ms`,
    );
    console.log('                            renewals/s   p50 ms   p99 ms  issuer CPU s  per CPU-s  errors');
    for (const r of results)
      console.log(
        `  ${r.name.padEnd(24)}${r.rate.toFixed(0).padStart(12)}${r.p50.toFixed(1).padStart(9)}${r.p99.toFixed(1).padStart(9)}${r.cpuS.toFixed(1).padStart(14)}${r.perCore.toFixed(0).padStart(11)}${String(r.errors).padStart(8)}`,
      );
    const [level, one, twoR] = results as [Result, Result, Result];
    console.log(
      `  PostgreSQL / LevelDB, per CPU-s      ${(one.perCore / level.perCore).toFixed(2)}x (goal >= 0.8x)`,
    );
    console.log(`  PostgreSQL / LevelDB, renewals/s     ${(one.rate / level.rate).toFixed(2)}x`);
    console.log(`  two replicas / one, renewals/s       ${(twoR.rate / one.rate).toFixed(2)}x`);
    console.log(
      `  goal >= 500 renewals per issuer CPU-s: ${level.perCore >= 500 ? 'met' : 'NOT met'} on LevelDB, ${one.perCore >= 500 ? 'met' : 'NOT met'} on PostgreSQL`,
    );
    if (results.some((r) => r.errors > 0)) throw new Error('renewals failed during the run');
  } finally {
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
