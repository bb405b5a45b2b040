/**
 * The issuer store on LevelDB (classic-level on disk) or memory-level: one process. LevelDB has
 * atomic batches but no transactions, so every batch (and `nextSequence`) runs behind one
 * in-process mutex: its preconditions are read and its writes applied with nothing in between.
 * Reads do not wait.
 *
 * Layout (schema 2, `meta/schema`): a value is `0xff`, its version (8 bytes, big-endian), then
 * its CBOR. A value without the `0xff` mark (no CBOR item starts with it) was written by schema 1
 * and has version 0. `meta/store/version` holds the last version given, `meta/store/seq/<name>`
 * the last value of each sequence; they are written in the same LevelDB batch as the change that
 * moves them. Opening a schema-1 store upgrades it in place (nothing to rewrite; the `rev`
 * sequence starts after the issuer's own `meta/revseq`); a newer schema is refused.
 */
import type { AbstractLevel } from 'abstract-level';
import { ClassicLevel } from 'classic-level';
import { MemoryLevel } from 'memory-level';
import { IssuerError } from '../errors.ts';
import type {
  BatchResult,
  IssuerStore,
  ListOptions,
  StoreEntry,
  StoreEvent,
  StoreLock,
  StoreOp,
  StoreSubscription,
} from './store.ts';
import { STORE_SCHEMA_VERSION } from './store.ts';
import {
  cbor,
  checkChannel,
  checkCount,
  checkName,
  closedError,
  conflict,
  holds,
  isReserved,
  listBounds,
  planBatch,
  possibleKey,
  RESERVED_PREFIX,
  resolveNext,
} from './store-keys.ts';

type Db = AbstractLevel<string | Buffer | Uint8Array, string, Uint8Array>;
type LevelWrite = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

const SCHEMA_KEY = 'meta/schema';
const VERSION_KEY = `${RESERVED_PREFIX}version`;
const seqKey = (name: string) => `${RESERVED_PREFIX}seq/${name}`;
const MARK = 0xff;

function encode(version: number, value: unknown): Uint8Array {
  const body = cbor.encode(value) as Uint8Array;
  const out = new Uint8Array(9 + body.length);
  out[0] = MARK;
  new DataView(out.buffer).setBigUint64(1, BigInt(version));
  out.set(body, 9);
  return out;
}

function decode<T>(raw: Uint8Array): StoreEntry<T> {
  if (raw[0] !== MARK) return { value: cbor.decode(raw) as T, version: 0 };
  const version = Number(new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getBigUint64(1));
  return { value: cbor.decode(raw.subarray(9)) as T, version };
}

class LevelStore implements IssuerStore {
  readonly kind = 'leveldb' as const;
  readonly #db: Db;
  #version = 0;
  readonly #sequences = new Map<string, number>();
  readonly #listeners = new Map<string, Set<(e: StoreEvent) => void>>();
  readonly #locks = new Set<string>();
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(db: Db) {
    this.#db = db;
  }

  async init(): Promise<void> {
    await this.#db.open();
    const raw = await this.#db.get(SCHEMA_KEY);
    const schema = raw === undefined ? undefined : cbor.decode(raw);
    if (schema === undefined) {
      await this.#db.batch([{ type: 'put', key: SCHEMA_KEY, value: cbor.encode(STORE_SCHEMA_VERSION) }]);
    } else if (schema === 1) {
      // Schema 1 → 2: values without a mark read as version 0; the revocation sequence continues.
      const rev = await this.#db.get('meta/revseq');
      await this.#db.batch([
        ...(rev === undefined ? [] : [{ type: 'put' as const, key: seqKey('rev'), value: rev }]),
        { type: 'put', key: SCHEMA_KEY, value: cbor.encode(STORE_SCHEMA_VERSION) },
      ]);
    } else if (schema !== STORE_SCHEMA_VERSION) {
      await this.#db.close();
      throw new IssuerError(
        typeof schema === 'number' && schema > STORE_SCHEMA_VERSION
          ? 'ERR_ISSUER_STORE_SCHEMA_NEWER'
          : 'ERR_ISSUER_INTERNAL',
        `the LevelDB store's schema ${String(schema)} is not ${STORE_SCHEMA_VERSION}: written by a newer edgeward? Nothing was changed`,
        { schema: String(schema), known: STORE_SCHEMA_VERSION },
      );
    }
    const v = await this.#db.get(VERSION_KEY);
    this.#version = v === undefined ? 0 : (cbor.decode(v) as number);
  }

  #open(): void {
    if (this.#closed) throw closedError();
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  async get<T>(key: string): Promise<T | undefined> {
    return (await this.getEntry<T>(key))?.value;
  }

  async getEntry<T>(key: string): Promise<StoreEntry<T> | undefined> {
    this.#open();
    if (!possibleKey(key)) return undefined;
    if (isReserved(key)) return undefined;
    const raw = await this.#db.get(key);
    return raw === undefined ? undefined : decode<T>(raw);
  }

  async getEntries<T>(keys: readonly string[]): Promise<(StoreEntry<T> | undefined)[]> {
    this.#open();
    const readable = keys.map((k) => possibleKey(k) && !isReserved(k));
    const raws = await this.#db.getMany(keys.filter((_, i) => readable[i]));
    let j = 0;
    return keys.map((_, i) => {
      if (!readable[i]) return undefined;
      const raw = raws[j++];
      return raw === undefined ? undefined : decode<T>(raw);
    });
  }

  async #sequence(name: string): Promise<number> {
    let n = this.#sequences.get(name);
    if (n === undefined) {
      const raw = await this.#db.get(seqKey(name));
      n = raw === undefined ? 0 : (cbor.decode(raw) as number);
      this.#sequences.set(name, n);
    }
    return n;
  }

  batch(ops: readonly StoreOp[]): Promise<BatchResult> {
    this.#open();
    const plan = planBatch(ops);
    return this.#exclusive(async () => {
      this.#open();
      if (plan.conditions.length > 0) {
        const found = await this.#db.getMany(plan.conditions.map((c) => c.key));
        plan.conditions.forEach((c, i) => {
          const raw = found[i];
          const at = raw === undefined || isReserved(c.key) ? undefined : decode(raw).version;
          if (!holds(c, at)) throw conflict(c, at);
        });
      }
      const version = this.#version + 1;
      const writes: LevelWrite[] = [];
      let puts = 0;
      for (const [key, w] of plan.writes) {
        if (w === undefined) writes.push({ type: 'del', key });
        else {
          writes.push({ type: 'put', key, value: encode(version, w.value) });
          puts++;
        }
      }
      const moved = new Map<string, number>();
      const sequences: number[] = [];
      for (const op of plan.next) {
        const n = (moved.get(op.sequence) ?? (await this.#sequence(op.sequence))) + 1;
        moved.set(op.sequence, n);
        sequences.push(n);
        const [key, value] = resolveNext(op, n);
        writes.push({ type: 'put', key, value: encode(version, value) });
        puts++;
      }
      for (const [name, n] of moved) writes.push({ type: 'put', key: seqKey(name), value: cbor.encode(n) });
      if (puts > 0) writes.push({ type: 'put', key: VERSION_KEY, value: cbor.encode(version) });
      if (writes.length > 0) await this.#db.batch(writes);
      if (puts > 0) this.#version = version;
      for (const [name, n] of moved) this.#sequences.set(name, n);
      for (const m of plan.notify) this.#deliver(m.channel, { type: 'message', payload: m.payload });
      return { version: puts > 0 ? version : undefined, sequences };
    });
  }

  async list<T>(prefix: string, o: ListOptions = {}): Promise<[string, T][]> {
    this.#open();
    if (typeof prefix !== 'string') throw new TypeError('store prefix must be a string');
    if (prefix !== '' && !possibleKey(prefix)) return [];
    const b = listBounds(prefix, o);
    const out: [string, T][] = [];
    if (o.limit === 0) return out;
    // The store's own keys live under meta/: only a listing that may reach them counts itself.
    const mayHitReserved = 'meta/'.startsWith(prefix) || prefix.startsWith('meta/');
    const range = {
      ...(b.lowerInclusive ? { gte: b.lower } : { gt: b.lower }),
      ...(b.upper === undefined ? {} : { lt: b.upper }),
      ...(o.limit === undefined || mayHitReserved ? {} : { limit: o.limit }),
      reverse: o.reverse ?? false,
    };
    for await (const [k, v] of this.#db.iterator(range)) {
      if (isReserved(k)) continue;
      out.push([k, decode<T>(v).value]);
      if (o.limit !== undefined && out.length >= o.limit) break;
    }
    return out;
  }

  async nextSequence(name: string, count = 1): Promise<number> {
    this.#open();
    checkName('store sequence', name);
    checkCount(count);
    return this.#exclusive(async () => {
      this.#open();
      const first = (await this.#sequence(name)) + 1;
      const last = first + count - 1;
      await this.#db.put(seqKey(name), cbor.encode(last));
      this.#sequences.set(name, last);
      return first;
    });
  }

  async dropSequences(prefix: string, lt: string): Promise<number> {
    this.#open();
    if (typeof prefix !== 'string' || typeof lt !== 'string')
      throw new TypeError('dropSequences takes a prefix and an upper bound');
    return this.#exclusive(async () => {
      this.#open();
      const names: string[] = [];
      const from = seqKey(prefix);
      for await (const k of this.#db.keys({ gte: from, lt: seqKey(lt) })) {
        if (!k.startsWith(from)) break;
        names.push(k.slice(seqKey('').length));
      }
      await this.#db.batch(names.map((n) => ({ type: 'del' as const, key: seqKey(n) })));
      for (const n of names) this.#sequences.delete(n);
      return names.length;
    });
  }

  #deliver(channel: string, event: StoreEvent): void {
    for (const l of this.#listeners.get(channel) ?? []) queueMicrotask(() => l(event));
  }

  async subscribe(channel: string, listener: (event: StoreEvent) => void): Promise<StoreSubscription> {
    this.#open();
    checkChannel(channel);
    const set = this.#listeners.get(channel) ?? new Set();
    this.#listeners.set(channel, set);
    const own = (e: StoreEvent) => listener(e);
    set.add(own);
    return {
      close: async () => {
        set.delete(own);
      },
    };
  }

  async tryLock(name: string): Promise<StoreLock | undefined> {
    this.#open();
    checkName('store lock', name);
    if (this.#locks.has(name)) return undefined;
    this.#locks.add(name);
    let released = false;
    return {
      lost: new AbortController().signal,
      release: async () => {
        if (released) return;
        released = true;
        this.#locks.delete(name);
      },
    };
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= (async () => {
      await this.#tail;
      this.#listeners.clear();
      await this.#db.close();
    })();
    return this.#closing;
  }
}

async function init(db: Db): Promise<IssuerStore> {
  const store = new LevelStore(db);
  await store.init();
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

/** For the conformance suite: a store on a level db the caller made (and may reopen). */
export function openLevelStoreOn(db: Db): Promise<IssuerStore> {
  return init(db);
}
