/**
 * How a store batch becomes SQL on PostgreSQL (`store-postgres.ts`): without `put-next`, one
 * `edgeward.apply_batch(...)` statement; with it, the sequences allocated first and the keys
 * built from them, in one transaction. A deadlock or serialization failure is retried, up to 5
 * times; a failed precondition is the store's typed conflict.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { BatchResult, StoreOp } from './store.ts';
import { cbor, conflict, planBatch, resolveNext } from './store-keys.ts';
import { storeError } from './store-postgres-connect.ts';

const RETRIES = 5;
const RETRYABLE = new Set(['40001', '40P01']);
export const CHANNEL_PREFIX = 'edgeward_';

/** The types of apply_batch's arguments, in order. */
const APPLY_TYPES = ['bigint', 'text', 'text', 'bigint', 'text', 'bytea', 'text', 'text', 'text'] as const;

/** One argument of apply_batch as an SQL literal array of `type`. */
function sqlArray(a: unknown, i: number): string {
  const type = APPLY_TYPES[i] as (typeof APPLY_TYPES)[number];
  const lit = (x: unknown): string => {
    if (x === null) return 'NULL';
    if (type === 'bigint') {
      const t = String(x);
      if (!/^-?\d{1,20}$/.test(t)) throw new TypeError(`not an integer: ${t}`);
      return t;
    }
    if (type === 'bytea') return `'\\x${(x as Buffer).toString('hex')}'`;
    return pg.escapeLiteral(x as string);
  };
  return `ARRAY[${(a as readonly unknown[]).map(lit).join(', ')}]::${type}[]`;
}

/** The advisory lock id of a key: the first 8 bytes of its SHA-256, as a signed 64-bit integer. */
function keyLockId(key: string): bigint {
  return createHash('sha256').update(key).digest().readBigInt64BE(0);
}

/** One batch (see the module comment of `store-postgres.ts`), retried on a deadlock or serialization failure. */
export async function applyBatch(pool: pg.Pool, ops: readonly StoreOp[]): Promise<BatchResult> {
  const plan = planBatch(ops);
  const locks = [...new Set([...plan.conditions.map((c) => c.key), ...plan.writes.keys()])]
    .map(keyLockId)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const conds = plan.conditions;
  const args = (writes: Map<string, { value: unknown } | undefined>) => {
    const putKeys: string[] = [];
    const putValues: Buffer[] = [];
    const delKeys: string[] = [];
    for (const [k, w] of writes) {
      if (w === undefined) delKeys.push(k);
      else {
        putKeys.push(k);
        putValues.push(Buffer.from(cbor.encode(w.value)));
      }
    }
    return [
      [...new Set(locks)].map(String),
      conds.map((c) => c.key),
      conds.map((c) => c.type),
      conds.map((c) => (c.type === 'version' ? c.version : null)),
      putKeys,
      putValues,
      delKeys,
      plan.notify.map((n) => CHANNEL_PREFIX + n.channel),
      plan.notify.map((n) => n.payload),
    ];
  };
  const APPLY = 'SELECT edgeward.apply_batch($1, $2, $3, $4, $5, $6, $7, $8, $9) AS version';
  for (let attempt = 1; ; attempt++) {
    try {
      if (plan.next.length === 0) {
        const r = await pool.query<{ version: string | null }>(APPLY, args(plan.writes));
        const v = r.rows[0]?.version;
        return { version: v == null ? undefined : Number(v), sequences: [] };
      }
      return await withNext(pool, plan, args);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'EW409') {
        const e = err as { detail?: string; hint?: string };
        const c = conds[Number(e.detail)];
        if (c !== undefined) throw conflict(c, e.hint === 'absent' ? undefined : Number(e.hint));
      }
      if (typeof code === 'string' && RETRYABLE.has(code) && attempt < RETRIES) continue;
      throw storeError(err, 'issuer store batch');
    }
  }
}

/**
 * A batch with put-next, in two round trips: `BEGIN; allocate` (the sequences' rows stay locked
 * to commit), then the keys built in JS and `SELECT apply_batch(...); COMMIT` as one simple
 * query. Both are literal SQL (simple protocol: several statements, no parameters): sequence
 * names are [a-z0-9._-], numbers are numbers, values are hex bytea, every string goes through
 * pg's escapeLiteral.
 */
async function withNext(
  pool: pg.Pool,
  plan: ReturnType<typeof planBatch>,
  args: (w: Map<string, { value: unknown } | undefined>) => unknown[],
): Promise<BatchResult> {
  const counts = new Map<string, number>();
  for (const op of plan.next) counts.set(op.sequence, (counts.get(op.sequence) ?? 0) + 1);
  const names = [...counts.keys()].sort();
  const client = await pool.connect();
  let broken = false;
  try {
    try {
      const rows = names.map((n) => `('${n}', ${counts.get(n)})`).join(', ');
      const results = (await client.query(
        `BEGIN; INSERT INTO edgeward.sequences (name, value) VALUES ${rows}
         ON CONFLICT (name) DO UPDATE SET value = edgeward.sequences.value + EXCLUDED.value
         RETURNING name, value`,
      )) as unknown as pg.QueryResult<{ name: string; value: string }>[];
      const nextOf = new Map<string, number>();
      for (const row of results[1]?.rows ?? []) {
        nextOf.set(row.name, Number(row.value) - (counts.get(row.name) as number) + 1);
      }
      const writes = new Map(plan.writes);
      const sequences: number[] = [];
      for (const op of plan.next) {
        const n = nextOf.get(op.sequence) as number;
        nextOf.set(op.sequence, n + 1);
        sequences.push(n);
        const [key, value] = resolveNext(op, n);
        writes.delete(key);
        writes.set(key, { value });
      }
      const applied = (await client.query(
        `SELECT edgeward.apply_batch(${args(writes).map(sqlArray).join(', ')}) AS version; COMMIT`,
      )) as unknown as pg.QueryResult<{ version: string | null }>[];
      const v = applied[0]?.rows[0]?.version;
      return { version: v == null ? undefined : Number(v), sequences };
    } catch (err) {
      // A query that timed out still occupies the connection: drop it (the server rolls back).
      if ((err as Error).message === 'Query read timeout') broken = true;
      else
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
      throw err;
    }
  } finally {
    client.release(broken);
  }
}
