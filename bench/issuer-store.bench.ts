/**
 * The issuer store's operations side by side in one run, on memory-level, classic-level and
 * PostgreSQL (a throw-away local cluster over its Unix socket, fsync=off as in the tests: this
 * measures the store's CPU and round trips, not a disk): a plain put, a single-use consumption
 * ([present, del, put]), a put-next (sequence + record, one transaction), and a get; each with 1
 * and with 16 callers at once. Alternated rounds, median reported (BENCHMARKS.md).
 * Run: `npm run bench issuer-store`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IssuerStore, StoreOp } from '../runtime/issuer/store.ts';
import { openLevelStore, openMemoryStore } from '../runtime/issuer/store.ts';
import { migratePostgresStore, openPostgresStore } from '../runtime/issuer/store-postgres.ts';
import { startPostgres } from '../test/helpers/postgres.ts';
import { median } from './stats.ts';

const OPS = 2000;
const ROUNDS = 3;
const record = (i: number) => ({
  name: `gw-${i}`,
  disabled: false,
  method: 'tpm',
  createdAt: 1_700_000_000_000 + i,
  akPublic: new Uint8Array(88).fill(i % 251),
  ekHash: 'ab'.repeat(32),
  firmware: '1.4.2',
});

type Workload = (store: IssuerStore, i: number) => Promise<unknown>;

const WORKLOADS: Record<string, { prepare?: (s: IssuerStore, n: number) => Promise<void>; op: Workload }> = {
  put: { op: (s, i) => s.batch([{ type: 'put', key: `gw/gw-${i}`, value: record(i) }]) },
  consume: {
    prepare: async (s, n) => {
      for (let i = 0; i < n; i += 500) {
        const ops: StoreOp[] = [];
        for (let j = i; j < Math.min(n, i + 500); j++)
          ops.push({ type: 'put', key: `token/${j}`, value: { j } });
        await s.batch(ops);
      }
    },
    op: (s, i) =>
      s.batch([
        { type: 'present', key: `token/${i}` },
        { type: 'del', key: `token/${i}` },
        { type: 'put', key: `gw/gw-${i}`, value: record(i) },
      ]),
  },
  'put-next': {
    op: (s, i) =>
      s.batch([
        {
          type: 'put-next',
          sequence: 'rev',
          key: (n) => `rev/${String(n).padStart(12, '0')}`,
          value: (n) => ({ n }),
        },
        { type: 'put', key: `gw/gw-${i}`, value: record(i) },
      ]),
  },
  get: {
    prepare: (s, n) => WORKLOADS.consume?.prepare?.(s, n) ?? Promise.resolve(),
    op: (s, i) => s.get(`token/${i}`),
  },
};

/** ops/s and per-op latencies (ms) of `n` ops run by `callers` concurrent loops. */
async function drive(store: IssuerStore, w: Workload, n: number, callers: number) {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      for (let i = next++; i < n; i = next++) {
        const a = performance.now();
        await w(store, i);
        lat.push(performance.now() - a);
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return {
    perSec: n / s,
    p50: lat[Math.floor(lat.length * 0.5)] ?? 0,
    p99: lat[Math.floor(lat.length * 0.99)] ?? 0,
  };
}

export default async function run(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'bench-issuer-store-'));
  const cluster = await startPostgres();
  let dbs = 0;
  const backends: Record<string, () => Promise<IssuerStore>> = {
    'memory-level': () => openMemoryStore(),
    'classic-level': () => openLevelStore(join(tmp, `l${dbs++}`)),
    PostgreSQL: async () => {
      const name = `b${dbs++}`;
      await cluster.sql(`CREATE DATABASE ${name}`);
      await migratePostgresStore({ url: cluster.url(name) });
      return openPostgresStore({ url: cluster.url(name), poolSize: 16 });
    },
  };
  try {
    console.log(`${OPS} ops per measurement, median of ${ROUNDS} alternated rounds; latency p50/p99 in ms`);
    console.log(
      '| workload | callers | memory-level | classic-level | PostgreSQL | PostgreSQL / classic-level |',
    );
    console.log('|---|---|---|---|---|---|');
    for (const [wname, w] of Object.entries(WORKLOADS)) {
      for (const callers of [1, 16]) {
        const got: Record<string, { perSec: number[]; p50: number[]; p99: number[] }> = {};
        for (let r = 0; r < ROUNDS; r++) {
          for (const [bname, open] of Object.entries(backends)) {
            const store = await open();
            await w.prepare?.(store, OPS);
            const m = await drive(store, w.op, OPS, callers);
            await store.close();
            got[bname] ??= { perSec: [], p50: [], p99: [] };
            got[bname].perSec.push(m.perSec);
            got[bname].p50.push(m.p50);
            got[bname].p99.push(m.p99);
          }
        }
        const cell = (b: string) => {
          const g = got[b] as { perSec: number[]; p50: number[]; p99: number[] };
          return `${Math.round(median(g.perSec)).toLocaleString('en')}/s (${median(g.p50).toFixed(2)}/${median(g.p99).toFixed(2)})`;
        };
        const ratio = median(got.PostgreSQL?.perSec ?? []) / median(got['classic-level']?.perSec ?? []);
        console.log(
          `| ${wname} | ${callers} | ${cell('memory-level')} | ${cell('classic-level')} | ${cell('PostgreSQL')} | ${ratio.toFixed(2)}× |`,
        );
      }
    }
  } finally {
    await cluster.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}
