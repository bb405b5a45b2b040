/**
 * The issuer's store: a small key/value contract (get, atomic batch with preconditions, ordered
 * prefix listing, sequences, notifications, singleton locks) that LevelDB implements for one
 * process (`store-level.ts`: classic-level on disk for the daemon, memory-level in tests) and
 * PostgreSQL implements for any number of replicas (`store-postgres.ts`). The same conformance
 * suite (test/runtime/issuer/store/) runs on all three.
 *
 * - Values are CBOR (cbor-x, plain maps, no records extension). Every put gives the value a new
 *   version: a positive integer, different from every version this key had before (also across
 *   a delete and a re-create), so "at version N" cannot be fooled by an A-B-A. A value written by
 *   a LevelDB store before versions existed has version 0.
 * - A batch is all or nothing. Its preconditions (`absent`, `present`, `version`) are checked
 *   against the state before the batch, all of them, before anything is written; one that does
 *   not hold fails the whole batch with `ERR_ISSUER_STORE_CONFLICT` and nothing is written, so
 *   the caller can re-read and retry, or refuse. Single use is `[{ type: 'present', key }, { type:
 *   'del', key }]`: of two batches racing to consume a key, exactly one succeeds.
 * - Sequences are assigned by the store: `nextSequence(name, count?)`, or a `put-next` op that
 *   allocates the next value of a named sequence and writes a key built from it in the same batch.
 *   Values start at 1 and never repeat; batches allocating from one sequence commit in sequence
 *   order, with no gaps (a reader that has seen N has seen every put-next value below N). That
 *   order costs: on PostgreSQL, put-next batches of one sequence run one at a time (the sequence's
 *   row is held until commit). Use put-next where commit order matters (revocations), and
 *   `nextSequence(name, 100)` blocks for ids that only need to be unique (audit records).
 * - Keys are well-formed Unicode strings without U+0000, at most 1024 UTF-8 bytes, ordered by
 *   their UTF-8 bytes (= code point order; LevelDB's order, and `COLLATE "C"` in SQL). Keys under
 *   `meta/store/` (and `meta/schema`) belong to the store: batches may not write them and
 *   listings skip them.
 * - `notify` ops publish to a channel when (and only if) the batch commits; `subscribe` receives
 *   them, in this process for LevelDB, from every replica for PostgreSQL. A `resync` event says
 *   messages may have been missed (the connection was lost and is back): re-read from your last
 *   position.
 * - `tryLock(name)` takes a named lock for a singleton job (pruning): held until `release()`, or
 *   until `lost` aborts (the PostgreSQL connection holding it died).
 *
 * After `close()` every call rejects with `ERR_ISSUER_CLOSED`. Programmer mistakes (a key that
 * breaks the rules above, an unknown op) throw `TypeError`.
 *
 * @example
 * ```ts
 * const store = await openLevelStore('/var/lib/edgeward-issuer');
 * await store.batch([{ type: 'put', key: 'reg/ek/ab12', value: { name: 'gw-1' } }]);
 * const e = await store.getEntry<Gw>('gw/gw-1');
 * await store.batch([
 *   { type: 'version', key: 'gw/gw-1', version: e.version },
 *   { type: 'put', key: 'gw/gw-1', value: { ...e.value, disabled: true } },
 *   { type: 'put-next', sequence: 'rev', key: (n) => K.revocation(n), value: (n) => ({ sequence: n }) },
 *   { type: 'notify', channel: 'revocations', payload: '' },
 * ]); // → { version, sequences: [n] }, or ERR_ISSUER_STORE_CONFLICT
 * ```
 */
export type StoreOp =
  /** Write `value` under `key` (a new version). */
  | { type: 'put'; key: string; value: unknown }
  /** Delete `key` (no-op when absent). */
  | { type: 'del'; key: string }
  /** Allocate the next value `n` of `sequence` and write `value(n)` under `key(n)`. */
  | {
      type: 'put-next';
      sequence: string;
      key: (n: number) => string;
      value: (n: number) => unknown;
    }
  /** Precondition: `key` has no value. */
  | { type: 'absent'; key: string }
  /** Precondition: `key` has a value. */
  | { type: 'present'; key: string }
  /** Precondition: `key` has a value at exactly `version`. */
  | { type: 'version'; key: string; version: number }
  /** Publish `payload` on `channel` once the batch has committed. */
  | { type: 'notify'; channel: string; payload?: string };

export type StoreWriteOp = Extract<StoreOp, { type: 'put' | 'del' }>;
export type StoreCondition = Extract<StoreOp, { type: 'absent' | 'present' | 'version' }>;

export interface BatchResult {
  /** The version of every value the batch put (`undefined` when it put none). */
  readonly version: number | undefined;
  /** The values allocated by the batch's `put-next` ops, in op order. */
  readonly sequences: readonly number[];
}

export interface StoreEntry<T> {
  readonly value: T;
  readonly version: number;
}

export interface ListOptions {
  /** Only keys after this one (byte order). */
  readonly gt?: string;
  /** Only keys before this one (byte order). */
  readonly lt?: string;
  readonly limit?: number;
  /** Last key first; `limit` then counts from the end. */
  readonly reverse?: boolean;
}

/** What `subscribe` delivers: a message published by a committed batch, or a resync hint. */
export type StoreEvent = { readonly type: 'message'; readonly payload: string } | { readonly type: 'resync' };

export interface StoreSubscription {
  close(): Promise<void>;
}

export interface StoreLock {
  /** Aborts when the lock is lost without `release()` (the connection holding it died). */
  readonly lost: AbortSignal;
  release(): Promise<void>;
}

export interface IssuerStore {
  /** `'leveldb'` (one process) or `'postgres'` (shared by replicas). */
  readonly kind: 'leveldb' | 'postgres';
  get<T>(key: string): Promise<T | undefined>;
  /** The value with its version. */
  getEntry<T>(key: string): Promise<StoreEntry<T> | undefined>;
  /** All or nothing; preconditions first (`ERR_ISSUER_STORE_CONFLICT`), then the writes in op order. */
  batch(ops: readonly StoreOp[]): Promise<BatchResult>;
  /** Entries whose key starts with `prefix` (or equals it), in byte order, within `gt`/`lt`. */
  list<T>(prefix: string, options?: ListOptions): Promise<[string, T][]>;
  /**
   * The next value of a named sequence (1, 2, ...), on its own; with `count`, the first of `count`
   * consecutive values reserved at once (a block of ids that only need to be unique, e.g. audit).
   */
  nextSequence(name: string, count?: number): Promise<number>;
  /** Messages published by `notify` ops on `channel` (lowercase letters, digits, `_`). */
  subscribe(channel: string, listener: (event: StoreEvent) => void): Promise<StoreSubscription>;
  /** A named lock for a singleton job, or `undefined` when someone else holds it. */
  tryLock(name: string): Promise<StoreLock | undefined>;
  /** Idempotent. */
  close(): Promise<void>;
  /** A shared database (PostgreSQL): still at the schema this build knows (readiness), else a typed error. */
  checkSchema?(): Promise<void>;
  /** A shared database's connection pool now (metrics). */
  poolStats?(): StorePoolStats;
}

export interface StorePoolStats {
  /** Connections open (idle and in use); at most `max`. */
  readonly total: number;
  readonly idle: number;
  /** Requests waiting for a connection (the pool is exhausted). */
  readonly waiting: number;
  readonly max: number;
}

/** The layout version of a LevelDB issuer store (`meta/schema`). 2: values carry versions, sequences. */
export const STORE_SCHEMA_VERSION = 2;

export { cbor as issuerCbor } from './store-keys.ts';

export { openLevelStore, openMemoryStore } from './store-level.ts';
