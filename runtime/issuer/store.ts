/**
 * The issuer's store: a small key/value contract (get, atomic batch, ordered prefix listing)
 * that LevelDB implements here and that a shared SQL store could implement later (one table of
 * key, value; a batch is one transaction). Values are CBOR (cbor-x, plain maps, no records
 * extension). `classic-level` on disk for the daemon, `memory-level` in tests.
 *
 * Key spaces (see `keys.ts`): registrations, join tokens, sessions, issued certificates,
 * revocations, firmware manifests, audit events, meta (schema version, sequences).
 *
 * @example
 * ```ts
 * const store = await openLevelStore('/var/lib/edgeward-issuer');
 * await store.batch([{ type: 'put', key: 'reg/ek/ab12', value: { name: 'gw-1' } }]);
 * ```
 */
import type { AbstractLevel } from 'abstract-level';
import { Encoder } from 'cbor-x';
import { ClassicLevel } from 'classic-level';
import { MemoryLevel } from 'memory-level';
import { IssuerError } from '../errors.ts';

export type StoreOp = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string };

export interface IssuerStore {
  get<T>(key: string): Promise<T | undefined>;
  /** All or nothing. */
  batch(ops: readonly StoreOp[]): Promise<void>;
  /** Entries whose key starts with `prefix`, in key order, after `gt` when given. */
  list<T>(
    prefix: string,
    options?: { gt?: string; limit?: number; reverse?: boolean },
  ): Promise<[string, T][]>;
  close(): Promise<void>;
}

export const STORE_SCHEMA_VERSION = 1;
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });

type Db = AbstractLevel<string | Buffer | Uint8Array, string, Uint8Array>;

class LevelStore implements IssuerStore {
  readonly #db: Db;
  constructor(db: Db) {
    this.#db = db;
  }
  async get<T>(key: string): Promise<T | undefined> {
    const v = await this.#db.get(key);
    return v === undefined ? undefined : (cbor.decode(v) as T);
  }
  async batch(ops: readonly StoreOp[]): Promise<void> {
    if (ops.length === 0) return;
    await this.#db.batch(
      ops.map((o) =>
        o.type === 'put'
          ? { type: 'put' as const, key: o.key, value: cbor.encode(o.value) as Uint8Array }
          : { type: 'del' as const, key: o.key },
      ),
    );
  }
  async list<T>(
    prefix: string,
    o: { gt?: string; limit?: number; reverse?: boolean } = {},
  ): Promise<[string, T][]> {
    const out: [string, T][] = [];
    const range = {
      gt: o.gt !== undefined && o.gt > prefix ? o.gt : prefix,
      lt: `${prefix}\uffff`,
      limit: o.limit ?? -1,
      reverse: o.reverse ?? false,
    };
    for await (const [k, v] of this.#db.iterator(range)) out.push([k, cbor.decode(v) as T]);
    return out;
  }
  async close(): Promise<void> {
    await this.#db.close();
  }
}

async function init(db: Db): Promise<IssuerStore> {
  await db.open();
  const store = new LevelStore(db);
  const v = await store.get<number>('meta/schema');
  if (v === undefined) await store.batch([{ type: 'put', key: 'meta/schema', value: STORE_SCHEMA_VERSION }]);
  else if (v !== STORE_SCHEMA_VERSION) {
    await store.close();
    throw new IssuerError(
      'ERR_ISSUER_INTERNAL',
      `store schema ${v} is not ${STORE_SCHEMA_VERSION} (no migration known)`,
    );
  }
  return store;
}

/** LevelDB on disk. */
export function openLevelStore(dir: string): Promise<IssuerStore> {
  return init(
    new ClassicLevel<string, Uint8Array>(dir, {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    }) as unknown as Db,
  );
}

/** In memory, for tests and the agent's `--dev` issuer. */
export function openMemoryStore(): Promise<IssuerStore> {
  return init(
    new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as Db,
  );
}

export { cbor as issuerCbor };
