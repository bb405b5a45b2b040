/**
 * The agent's sealed cache: LevelDB (`classic-level` on disk, `memory-level` in tests) with every
 * value CBOR-encoded and sealed with AES-256-GCM under one data key (ARCHITECTURE.md §4).
 *
 * - The data key is random, wrapped by a `DataKeyProtector` (TPM seal, or a 0600 key file) and
 *   kept as `meta/data-key`. When it cannot be unwrapped the store is unusable: with
 *   `resetOnKeyFailure` it is wiped and started afresh (the agent re-attests), else `ERR_STORE_KEY`.
 * - A value that fails authentication is deleted and reported as missing (`onDropped`), so the
 *   caller re-obtains it; it is never returned.
 * - `batch` is atomic (one LevelDB write batch).
 * - `meta/schema` (sealed too) holds the layout version; migrations run at open.
 *
 * @example
 * ```ts
 * const store = await SealedStore.open({ db, protector, random, logger });
 * await store.batch([{ type: 'put', name: 'gateway', value: record }]);
 * const rec = await store.get<GatewayRecord>('gateway');
 * ```
 */

import type { AbstractLevel } from 'abstract-level';
import { decode, encode } from 'cbor-x';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { AgentError } from '../errors.ts';
import {
  type MigrationContext,
  STORE_MIGRATIONS,
  STORE_SCHEMA_VERSION,
  type StoreMigration,
} from './migrations.ts';
import type { DataKeyProtector } from './protector.ts';
import { openValue, sealValue } from './value-crypto.ts';

// biome-ignore lint/suspicious/noExplicitAny: both level backends, whatever their storage format
export type LevelDb = AbstractLevel<any, string, Uint8Array>;

export type StoreOp = { type: 'put'; name: string; value: unknown } | { type: 'del'; name: string };

const DATA_KEY = 'meta/data-key';
const SCHEMA = 'meta/schema';
const RAW = { keyEncoding: 'utf8', valueEncoding: 'view' } as const;

export interface SealedStoreOptions {
  readonly db: LevelDb;
  readonly protector: DataKeyProtector;
  readonly random: Random;
  readonly logger: Logger;
  /** Wipe and start afresh when the data key cannot be unsealed (default false: throw). */
  readonly resetOnKeyFailure?: boolean;
  /** Override the layout version and migrations (tests of the migration runner). */
  readonly schemaVersion?: number;
  readonly migrations?: readonly StoreMigration[];
  /** Called with the name of every value dropped because it failed authentication. */
  readonly onDropped?: (name: string) => void;
}

export class SealedStore {
  readonly #db: LevelDb;
  readonly #key: Uint8Array;
  readonly #random: Random;
  readonly #logger: Logger;
  readonly #onDropped: ((name: string) => void) | undefined;
  #closed = false;
  #dropped = 0;
  /** True when this open created a fresh store (first boot, or after a wipe). */
  readonly fresh: boolean;
  readonly protectorKind: DataKeyProtector['kind'];

  private constructor(o: SealedStoreOptions, key: Uint8Array, fresh: boolean) {
    this.#db = o.db;
    this.#key = key;
    this.#random = o.random;
    this.#logger = o.logger;
    this.#onDropped = o.onDropped;
    this.fresh = fresh;
    this.protectorKind = o.protector.kind;
  }

  /** Open the db (if needed), unwrap or create the data key, check the schema, run migrations. */
  static async open(o: SealedStoreOptions): Promise<SealedStore> {
    if (o.db.status !== 'open') await o.db.open();
    try {
      return await SealedStore.#load(o);
    } catch (err) {
      await o.db.close(); // release the LevelDB lock: a refused store must not block the next open
      throw err;
    }
  }

  static async #load(o: SealedStoreOptions): Promise<SealedStore> {
    const db = o.db;
    const version = o.schemaVersion ?? STORE_SCHEMA_VERSION;
    const blob = await db.get(DATA_KEY, RAW);
    if (blob === undefined) return SealedStore.#create(o, version);
    let key: Uint8Array;
    try {
      key = await o.protector.unseal(blob);
      if (key.length !== 32) throw new AgentError('ERR_STORE_KEY', 'unsealed data key is not 32 bytes');
    } catch (err) {
      if (!o.resetOnKeyFailure) throw err;
      const tpmCode = (err as { cause?: { code?: unknown } }).cause?.code;
      o.logger.error('store data key cannot be unsealed; wiping the store and starting afresh', {
        event: 'store.reset',
        reason: (err as { code?: string }).code ?? 'ERR_STORE_KEY',
        // What the TPM said: ERR_ATTESTOR_PCR_POLICY when the PCRs the key was sealed to changed.
        cause: typeof tpmCode === 'string' ? tpmCode : undefined,
      });
      await db.clear();
      return SealedStore.#create(o, version);
    }
    const store = new SealedStore(o, key, false);
    const have = await store.get<number>(SCHEMA);
    if (typeof have !== 'number') {
      // The version record is authenticated: if it is gone or forged, nothing here can be trusted.
      o.logger.error('store schema record missing or tampered; wiping the store', { event: 'store.reset' });
      await db.clear();
      return SealedStore.#create(o, version);
    }
    if (have > version)
      throw new AgentError('ERR_STORE_SCHEMA', `store schema ${have} is newer than this build (${version})`, {
        have,
        version,
      });
    await store.#migrate(have, version, o.migrations ?? STORE_MIGRATIONS);
    return store;
  }

  static async #create(o: SealedStoreOptions, version: number): Promise<SealedStore> {
    const key = o.random.bytes(32);
    const blob = await o.protector.seal(key);
    const store = new SealedStore(o, key, true);
    await o.db.batch(
      [
        { type: 'put', key: DATA_KEY, value: blob },
        { type: 'put', key: SCHEMA, value: sealValue(key, SCHEMA, encode(version), o.random) },
      ],
      RAW,
    );
    o.logger.info('store created', { event: 'store.created', protector: o.protector.kind, schema: version });
    return store;
  }

  async #migrate(from: number, to: number, migrations: readonly StoreMigration[]): Promise<void> {
    for (let at = from; at < to; at++) {
      const step = migrations.find((m) => m.from === at);
      if (step === undefined)
        throw new AgentError('ERR_STORE_SCHEMA', `no store migration from ${at}`, { at });
      const ops: StoreOp[] = [];
      const ctx: MigrationContext = {
        get: (n) => this.get(n),
        entries: (p) => this.entries(p),
        queue: (op) => ops.push(op),
      };
      try {
        await step.up(ctx);
      } catch (cause) {
        throw new AgentError('ERR_STORE_SCHEMA', `store migration from ${at} failed`, { at }, { cause });
      }
      await this.batch([...ops, { type: 'put', name: SCHEMA, value: at + 1 }]);
      this.#logger.info('store migrated', { event: 'store.migrated', from: at, to: at + 1 });
    }
  }

  /** The value under `name`, or undefined when absent or dropped for failing authentication. */
  async get<T>(name: string): Promise<T | undefined> {
    this.#check();
    const sealed = await this.#db.get(name, RAW);
    if (sealed === undefined) return undefined;
    return this.#open<T>(name, sealed);
  }

  /** Every `[name, value]` whose name starts with `prefix`, in key order; tampered ones dropped. */
  async *entries<T>(prefix: string): AsyncIterable<[string, T]> {
    this.#check();
    const bad: string[] = [];
    for await (const [name, sealed] of this.#db.iterator({ gte: prefix, lt: `${prefix}\uffff`, ...RAW })) {
      const v = this.#decrypt<T>(name, sealed);
      if (v === undefined) bad.push(name);
      else yield [name, v.value];
    }
    for (const name of bad) await this.#drop(name);
  }

  /** Apply every op atomically. */
  async batch(ops: readonly StoreOp[]): Promise<void> {
    this.#check();
    if (ops.length === 0) return;
    await this.#db.batch(
      ops.map((op) =>
        op.type === 'put'
          ? {
              type: 'put' as const,
              key: op.name,
              value: sealValue(this.#key, op.name, encode(op.value), this.#random),
            }
          : { type: 'del' as const, key: op.name },
      ),
      RAW,
    );
  }

  /** Number of sealed values and their total size in bytes (meta records excluded). */
  async stats(): Promise<{ values: number; bytes: number }> {
    this.#check();
    let values = 0;
    let bytes = 0;
    for await (const [k, v] of this.#db.iterator(RAW)) {
      if (k.startsWith('meta/') || k.startsWith('!')) continue;
      values++;
      bytes += v.length;
    }
    return { values, bytes };
  }

  /** How many values were dropped for failing authentication since open. */
  get dropped(): number {
    return this.#dropped;
  }

  /** A raw sublevel of the underlying db for a component that seals or hashes its own values. */
  sublevel(name: string, valueEncoding: 'view' | 'utf8' = 'view'): LevelDb {
    this.#check();
    return this.#db.sublevel<string, Uint8Array>(name, {
      keyEncoding: 'utf8',
      valueEncoding,
    }) as unknown as LevelDb;
  }

  /**
   * Sealing for the values a component keeps in its own sublevel (e.g. the broker's session
   * journal): AES-256-GCM under this store's data key, exactly like the store's own values, with
   * `prefix + key` as the authenticated name (a value moved to another key does not open).
   */
  valueSealer(prefix: string): {
    seal(name: string, plaintext: Uint8Array): Uint8Array;
    open(name: string, sealed: Uint8Array): Uint8Array | undefined;
  } {
    this.#check();
    return {
      seal: (name, plaintext) => sealValue(this.#key, prefix + name, plaintext, this.#random),
      open: (name, sealed) => openValue(this.#key, prefix + name, sealed),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#db.close();
  }

  async #open<T>(name: string, sealed: Uint8Array): Promise<T | undefined> {
    const v = this.#decrypt<T>(name, sealed);
    if (v !== undefined) return v.value;
    await this.#drop(name);
    return undefined;
  }

  #decrypt<T>(name: string, sealed: Uint8Array): { value: T } | undefined {
    const plain = openValue(this.#key, name, sealed);
    if (plain === undefined) return undefined;
    try {
      return { value: decode(plain) as T };
    } catch {
      return undefined;
    }
  }

  async #drop(name: string): Promise<void> {
    this.#dropped++;
    this.#logger.warn('stored value failed authentication; dropped', {
      event: 'store.dropped',
      code: 'ERR_STORE_CORRUPT',
      name,
    });
    await this.#db.del(name, RAW);
    this.#onDropped?.(name);
  }

  #check(): void {
    if (this.#closed) throw new AgentError('ERR_STORE_CLOSED', 'store used after close');
  }
}
