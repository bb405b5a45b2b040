/**
 * The issuer store on PostgreSQL, shared by any number of issuer replicas (npm `pg`, its pure-JS
 * client). Tables and the batch function are in `store-postgres-schema.ts`, how a batch is sent
 * in `store-postgres-batch.ts`.
 *
 * - A batch without `put-next` is one statement, `edgeward.apply_batch(...)`, in its own
 *   transaction (READ COMMITTED): it takes an advisory transaction lock per key it names (in lock
 *   id order), then checks the preconditions (each read after the locks, so it sees every batch
 *   that touched the key before), then writes. A batch with `put-next` first increments its
 *   sequences' rows (row locks held to commit: commit order = sequence order), then builds the
 *   keys and applies the rest, in one transaction. A deadlock or serialization failure (which the
 *   lock order should prevent) is retried, up to 5 times: a batch is declarative, so its
 *   preconditions are simply checked again.
 * - `subscribe` LISTENs on one dedicated connection (channel `edgeward_<name>`); when it is lost,
 *   it reconnects (100 ms doubling to 5 s) and sends every listener `{ type: 'resync' }`.
 * - `tryLock` holds a session advisory lock (class 0x6577, the name hashed) on a dedicated
 *   connection; when that connection dies, `lost` aborts.
 * - A pooled query unanswered within `queryTimeoutMs` (default 30 s) fails as
 *   ERR_ISSUER_STORE_UNAVAILABLE and its connection is dropped (a hung database, a partition).
 * - `openPostgresStore` connects once and checks the schema before it returns: unreachable, wrong
 *   password, not migrated, newer schema, malformed URL each give their typed code, and nothing
 *   is written. Connection failures while running are `ERR_ISSUER_STORE_UNAVAILABLE`.
 *
 * @example
 * ```ts
 * await migratePostgresStore({ url, password });           // edgeward issuer migrate
 * const store = await openPostgresStore({ url, password, poolSize: 10 });
 * ```
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { type Clock, systemClock, type Timer } from '../core/clock.ts';
import { type Logger, nullLogger } from '../core/logger.ts';
import { IssuerError } from '../errors.ts';
import type {
  BatchResult,
  IssuerStore,
  ListOptions,
  StoreEntry,
  StoreEvent,
  StoreLock,
  StoreOp,
  StorePoolStats,
  StoreSubscription,
} from './store.ts';
import {
  cbor,
  checkChannel,
  checkCount,
  checkName,
  closedError,
  listBounds,
  possibleKey,
} from './store-keys.ts';
import { applyBatch, CHANNEL_PREFIX } from './store-postgres-batch.ts';
import { Client, clientConfig, type PostgresConnectOptions, storeError } from './store-postgres-connect.ts';
import { checkSchema, LOCK_CLASS, migrate } from './store-postgres-schema.ts';

export interface PostgresStoreOptions extends PostgresConnectOptions {
  readonly clock?: Clock;
  readonly logger?: Logger;
}

function nameLockId(name: string): number {
  return createHash('sha256').update(name).digest().readInt32BE(0);
}

class PostgresStore implements IssuerStore {
  readonly kind = 'postgres' as const;
  readonly #pool: pg.Pool;
  readonly #config: pg.ClientConfig;
  readonly #clock: Clock;
  readonly #logger: Logger;
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #listeners = new Map<string, Set<(e: StoreEvent) => void>>();
  #listener: pg.Client | undefined;
  #listening: Promise<pg.Client> | undefined;
  #reconnect: Timer | undefined;
  #backoff = 100;
  readonly #lockClients = new Set<pg.Client>();

  constructor(pool: pg.Pool, config: pg.ClientConfig, clock: Clock, logger: Logger) {
    this.#pool = pool;
    this.#config = config;
    this.#clock = clock;
    this.#logger = logger;
  }

  #open(): void {
    if (this.#closed) throw closedError();
  }

  async #query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    this.#open();
    try {
      return await this.#pool.query<R>(text, values);
    } catch (err) {
      throw storeError(err, 'issuer store');
    }
  }

  async get<T>(key: string): Promise<T | undefined> {
    return (await this.getEntry<T>(key))?.value;
  }

  async getEntry<T>(key: string): Promise<StoreEntry<T> | undefined> {
    this.#open();
    if (!possibleKey(key)) return undefined;
    const r = await this.#query<{ value: Buffer; version: string }>(
      'SELECT value, version FROM edgeward.kv WHERE key = $1',
      [key],
    );
    const row = r.rows[0];
    return row === undefined
      ? undefined
      : { value: cbor.decode(row.value) as T, version: Number(row.version) };
  }

  async getEntries<T>(keys: readonly string[]): Promise<(StoreEntry<T> | undefined)[]> {
    this.#open();
    const wanted = [...new Set(keys.filter(possibleKey))];
    const found = new Map<string, StoreEntry<T>>();
    if (wanted.length > 0) {
      const r = await this.#query<{ key: string; value: Buffer; version: string }>(
        'SELECT key, value, version FROM edgeward.kv WHERE key = ANY ($1::text[])',
        [wanted],
      );
      for (const row of r.rows)
        found.set(row.key, { value: cbor.decode(row.value) as T, version: Number(row.version) });
    }
    return keys.map((k) => found.get(k));
  }

  async list<T>(prefix: string, o: ListOptions = {}): Promise<[string, T][]> {
    this.#open();
    if (typeof prefix !== 'string') throw new TypeError('store prefix must be a string');
    if (prefix !== '' && !possibleKey(prefix)) return [];
    const b = listBounds(prefix, o);
    if (o.limit === 0) return [];
    const values: unknown[] = [b.lower];
    let sql = `SELECT key, value FROM edgeward.kv WHERE key ${b.lowerInclusive ? '>=' : '>'} $1`;
    if (b.upper !== undefined) {
      values.push(b.upper);
      sql += ` AND key < $${values.length}`;
    }
    sql += ` ORDER BY key ${o.reverse ? 'DESC' : 'ASC'}`;
    if (o.limit !== undefined) {
      values.push(o.limit);
      sql += ` LIMIT $${values.length}`;
    }
    const r = await this.#query<{ key: string; value: Buffer }>(sql, values);
    return r.rows.map((row) => [row.key, cbor.decode(row.value) as T]);
  }

  async nextSequence(name: string, count = 1): Promise<number> {
    this.#open();
    checkName('store sequence', name);
    checkCount(count);
    const r = await this.#query<{ value: string }>(
      `INSERT INTO edgeward.sequences (name, value) VALUES ($1, $2)
       ON CONFLICT (name) DO UPDATE SET value = edgeward.sequences.value + EXCLUDED.value RETURNING value`,
      [name, count],
    );
    return Number(r.rows[0]?.value) - count + 1;
  }

  async dropSequences(prefix: string, lt: string): Promise<number> {
    this.#open();
    if (typeof prefix !== 'string' || typeof lt !== 'string')
      throw new TypeError('dropSequences takes a prefix and an upper bound');
    const r = await this.#query(
      'DELETE FROM edgeward.sequences WHERE name >= $1 AND name < $2 AND left(name, length($1)) = $1',
      [prefix, lt],
    );
    return r.rowCount ?? 0;
  }

  batch(ops: readonly StoreOp[]): Promise<BatchResult> {
    this.#open();
    return applyBatch(this.#pool, ops);
  }

  // --- notifications -------------------------------------------------------------------------

  #deliver(channel: string, event: StoreEvent): void {
    for (const l of this.#listeners.get(channel) ?? []) l(event);
  }

  #connectListener(): Promise<pg.Client> {
    this.#listening ??= (async () => {
      const c = new Client(this.#config);
      c.on('notification', (m) => {
        if (m.channel.startsWith(CHANNEL_PREFIX)) {
          this.#deliver(m.channel.slice(CHANNEL_PREFIX.length), {
            type: 'message',
            payload: m.payload ?? '',
          });
        }
      });
      const lost = () => {
        if (this.#listener !== c) return;
        this.#listener = undefined;
        this.#listening = undefined;
        c.end().catch(() => undefined);
        if (!this.#closed) this.#scheduleReconnect();
      };
      c.on('error', (err) => {
        this.#logger.warn('issuer store: notification connection lost', { error: String(err) });
        lost();
      });
      c.on('end', lost);
      try {
        await c.connect();
        for (const ch of this.#listeners.keys()) await c.query(`LISTEN ${CHANNEL_PREFIX}${ch}`);
      } catch (err) {
        this.#listening = undefined;
        c.end().catch(() => undefined);
        throw storeError(err, 'issuer store notifications');
      }
      this.#listener = c;
      return c;
    })();
    return this.#listening;
  }

  #scheduleReconnect(): void {
    if (this.#reconnect !== undefined || this.#closed) return;
    const delay = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, 5000);
    this.#reconnect = this.#clock.setTimer('store-listen-reconnect', delay, () => {
      this.#reconnect = undefined;
      if (this.#closed) return;
      this.#connectListener().then(
        () => {
          this.#backoff = 100;
          for (const ch of this.#listeners.keys()) this.#deliver(ch, { type: 'resync' });
        },
        () => this.#scheduleReconnect(),
      );
    });
  }

  async subscribe(channel: string, listener: (event: StoreEvent) => void): Promise<StoreSubscription> {
    this.#open();
    checkChannel(channel);
    const fresh = !this.#listeners.has(channel);
    const set = this.#listeners.get(channel) ?? new Set();
    this.#listeners.set(channel, set);
    const own = (e: StoreEvent) => listener(e);
    set.add(own);
    try {
      const c = await this.#connectListener();
      if (fresh) await c.query(`LISTEN ${CHANNEL_PREFIX}${channel}`);
    } catch (err) {
      set.delete(own);
      if (set.size === 0) this.#listeners.delete(channel);
      throw storeError(err, 'issuer store subscribe');
    }
    return {
      close: async () => {
        set.delete(own);
        if (set.size > 0 || this.#listeners.get(channel) !== set) return;
        this.#listeners.delete(channel);
        await this.#listener?.query(`UNLISTEN ${CHANNEL_PREFIX}${channel}`).catch(() => undefined);
      },
    };
  }

  // --- singleton locks -------------------------------------------------------------------------

  async tryLock(name: string): Promise<StoreLock | undefined> {
    this.#open();
    checkName('store lock', name);
    const c = new Client(this.#config);
    const lost = new AbortController();
    let released = false;
    const onLost = () => {
      this.#lockClients.delete(c);
      if (!released && !lost.signal.aborted) {
        lost.abort(
          new IssuerError('ERR_ISSUER_STORE_UNAVAILABLE', `store lock ${name} lost with its connection`),
        );
      }
    };
    c.on('error', () => onLost());
    c.on('end', onLost);
    try {
      await c.connect();
      const r = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::int, $2::int) AS ok', [
        LOCK_CLASS,
        nameLockId(name),
      ]);
      if (r.rows[0]?.ok !== true) {
        released = true;
        await c.end();
        return undefined;
      }
    } catch (err) {
      released = true;
      await c.end().catch(() => undefined);
      throw storeError(err, 'issuer store lock');
    }
    this.#lockClients.add(c);
    return {
      lost: lost.signal,
      release: async () => {
        if (released) return;
        released = true;
        this.#lockClients.delete(c);
        await c.end().catch(() => undefined); // ending the session releases its advisory locks
      },
    };
  }

  async checkSchema(): Promise<void> {
    this.#open();
    try {
      await checkSchema(this.#pool);
    } catch (err) {
      throw storeError(err, 'issuer store');
    }
  }

  poolStats(): StorePoolStats {
    const p = this.#pool;
    return { total: p.totalCount, idle: p.idleCount, waiting: p.waitingCount, max: p.options.max };
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= (async () => {
      this.#reconnect?.cancel();
      this.#listeners.clear();
      const listener = this.#listener;
      this.#listener = undefined;
      await listener?.end().catch(() => undefined);
      await Promise.all([...this.#lockClients].map((c) => c.end().catch(() => undefined)));
      await this.#pool.end().catch(() => undefined);
    })();
    return this.#closing;
  }
}

function makePool(o: PostgresStoreOptions): { pool: pg.Pool; config: pg.ClientConfig } {
  const { target: _t, ...config } = clientConfig(o);
  const size = o.poolSize ?? 10;
  if (!Number.isInteger(size) || size < 1 || size > 1000) throw new TypeError('poolSize must be 1-1000');
  const queryTimeout = o.queryTimeoutMs ?? 30_000;
  if (!Number.isInteger(queryTimeout) || queryTimeout < 1)
    throw new TypeError('queryTimeoutMs must be positive');
  // The pool's queries only: migrations, LISTEN and lock sessions are not bounded by it.
  const pool = new pg.Pool({
    ...config,
    Client,
    max: size,
    idleTimeoutMillis: 30_000,
    query_timeout: queryTimeout,
  });
  const logger = o.logger ?? nullLogger;
  // An idle connection that dies is dropped by the pool; the next query opens a new one.
  pool.on('error', (err) =>
    logger.warn('issuer store: idle database connection lost', { error: String(err) }),
  );
  return { pool, config };
}

/** A replica's store: connects, checks the schema (writes nothing), or fails with one typed code. */
export async function openPostgresStore(o: PostgresStoreOptions): Promise<IssuerStore> {
  const { pool, config } = makePool(o);
  try {
    const c = await pool.connect().catch((err: unknown) => {
      throw storeError(err, `issuer store ${describe(config)}`);
    });
    try {
      await checkSchema(c);
    } catch (err) {
      throw storeError(err, `issuer store ${describe(config)}`);
    } finally {
      c.release();
    }
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  return new PostgresStore(pool, config, o.clock ?? systemClock, o.logger ?? nullLogger);
}

/** `edgeward issuer migrate`: creates or upgrades the schema (idempotent). */
export async function migratePostgresStore(o: PostgresStoreOptions): Promise<{ from: number; to: number }> {
  const { target: _t, ...config } = clientConfig(o);
  const c = new Client(config);
  c.on('error', () => undefined);
  try {
    await c.connect();
  } catch (err) {
    await c.end().catch(() => undefined);
    throw storeError(err, `issuer store ${describe(config)}`);
  }
  try {
    return await migrate(c);
  } catch (err) {
    throw storeError(err, `issuer store migrate ${describe(config)}`);
  } finally {
    await c.end().catch(() => undefined);
  }
}

function describe(c: pg.ClientConfig): string {
  return `postgresql://${c.user ?? ''}@${c.host}:${c.port}/${c.database}`;
}
