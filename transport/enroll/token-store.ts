/**
 * Where join tokens live: only their SHA-256 hash, the device id they enroll and their expiry.
 * `take` removes and returns in one step, so a token is single use even when two devices race
 * with it; `consume` removes it only when the work done with it (the device's certificate) succeeded,
 * under the same per-store lock, so a refused CSR does not burn the token and two devices racing
 * with one token never both get a certificate. Two implementations: on an abstract-level database or sublevel (the agent hands over
 * a sublevel of its sealed LevelDB) and in memory (tests, `--dev`).
 *
 * @example
 * ```ts
 * const store = new LevelTokenStore(db.sublevel('device-tokens', { valueEncoding: 'json' }));
 * await store.put(hashHex, { deviceId: 'sensor-1', expiresAt });
 * const rec = await store.take(hashHex);   // undefined the second time
 * ```
 */
export interface TokenRecord {
  readonly deviceId: string;
  /** Epoch ms. */
  readonly expiresAt: number;
}

export interface TokenStore {
  put(hash: string, record: TokenRecord): Promise<void>;
  /** Remove the record and return it; undefined when there is none. */
  take(hash: string): Promise<TokenRecord | undefined>;
  /**
   * Run `use` with the record under this store's lock and delete the record only when `use`
   * resolves (its value is returned); when `use` rejects, the record stays and the rejection
   * propagates. Resolves to undefined (and `use` is not called) when there is no record.
   */
  consume<T>(hash: string, use: (record: TokenRecord) => Promise<T>): Promise<{ value: T } | undefined>;
  /** Delete every record that expired before `now`; resolves to how many. */
  prune(now: number): Promise<number>;
}

/** One promise chain: each `run` starts after the previous one settled. */
class Serial {
  #queue: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}

export class MemoryTokenStore implements TokenStore {
  readonly #map = new Map<string, TokenRecord>();
  readonly #lock = new Serial();

  async put(hash: string, record: TokenRecord): Promise<void> {
    this.#map.set(hash, { deviceId: record.deviceId, expiresAt: record.expiresAt });
  }

  take(hash: string): Promise<TokenRecord | undefined> {
    return this.#lock.run(async () => {
      const r = this.#map.get(hash);
      this.#map.delete(hash);
      return r;
    });
  }

  consume<T>(hash: string, use: (record: TokenRecord) => Promise<T>): Promise<{ value: T } | undefined> {
    return this.#lock.run(async () => {
      const r = this.#map.get(hash);
      if (r === undefined) return undefined;
      const value = await use(r);
      this.#map.delete(hash);
      return { value };
    });
  }

  async prune(now: number): Promise<number> {
    let n = 0;
    for (const [k, r] of this.#map) {
      if (r.expiresAt < now) {
        this.#map.delete(k);
        n++;
      }
    }
    return n;
  }
}

/** The subset of abstract-level this store needs (a `level` database or a sublevel of one). */
export interface LevelLike {
  get(key: string): Promise<string | undefined>;
  put(key: string, value: string): Promise<void>;
  del(key: string): Promise<void>;
  iterator(): AsyncIterable<[string, string]> & { close(): Promise<void> };
}

export class LevelTokenStore implements TokenStore {
  readonly #db: LevelLike;
  /** Serialises `take` and `consume` so that get+del is atomic within this process (LevelDB allows one process). */
  readonly #lock = new Serial();

  /** `db` stores string values (utf8 or a sublevel with the default encoding). */
  constructor(db: LevelLike) {
    this.#db = db;
  }

  async put(hash: string, record: TokenRecord): Promise<void> {
    await this.#db.put(hash, JSON.stringify({ deviceId: record.deviceId, expiresAt: record.expiresAt }));
  }

  take(hash: string): Promise<TokenRecord | undefined> {
    return this.#lock.run(async () => {
      const raw = await this.#db.get(hash);
      if (raw === undefined) return undefined;
      await this.#db.del(hash);
      return parseRecord(raw);
    });
  }

  consume<T>(hash: string, use: (record: TokenRecord) => Promise<T>): Promise<{ value: T } | undefined> {
    return this.#lock.run(async () => {
      const raw = await this.#db.get(hash);
      const rec = raw === undefined ? undefined : parseRecord(raw);
      if (rec === undefined) return undefined;
      const value = await use(rec);
      await this.#db.del(hash);
      return { value };
    });
  }

  async prune(now: number): Promise<number> {
    const doomed: string[] = [];
    const it = this.#db.iterator();
    try {
      for await (const [k, v] of it) {
        const r = parseRecord(v);
        if (r === undefined || r.expiresAt < now) doomed.push(k);
      }
    } finally {
      await it.close();
    }
    for (const k of doomed) await this.#db.del(k);
    return doomed.length;
  }
}

function parseRecord(raw: string): TokenRecord | undefined {
  try {
    const v = JSON.parse(raw) as { deviceId?: unknown; expiresAt?: unknown };
    if (typeof v.deviceId !== 'string' || typeof v.expiresAt !== 'number') return undefined;
    return { deviceId: v.deviceId, expiresAt: v.expiresAt };
  } catch {
    return undefined;
  }
}
