/**
 * A write-behind journal on a LevelDB sublevel: every put/del asked for during one turn of the
 * event loop goes into one `db.batch`, and each caller's promise settles only once that batch is
 * written (LevelDB has handed it to the OS, so it survives a kill -9 of the process). One batch is
 * in flight at a time; what arrives meanwhile forms the next one, so batches land in order and
 * grow under load (group commit). Scheduling is `setImmediate` — the next check phase, no timer.
 *
 * @example
 * ```ts
 * const journal = new Journal(db);
 * await journal.put('q!000000000001', bytes); // resolves after the batch holding it is written
 * await journal.flushed();                    // everything asked for so far is written
 * ```
 */

export type JournalOp =
  | { readonly type: 'put'; readonly key: string; readonly value: Uint8Array }
  | { readonly type: 'del'; readonly key: string };

/** The part of an abstract-level sublevel (utf8 keys, `view` values) the journal uses. */
export interface JournalDb {
  batch(ops: JournalOp[]): Promise<void>;
  iterator(): AsyncIterable<[string, Uint8Array]>;
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

export class Journal {
  readonly #db: JournalDb;
  #ops: JournalOp[] = [];
  #waiters: Waiter[] = [];
  #scheduled = false;
  #inFlight: Promise<void> | undefined;
  /** Number of batches written (for tests and stats). */
  batches = 0;

  constructor(db: JournalDb) {
    this.#db = db;
  }

  put(key: string, value: Uint8Array): Promise<void> {
    return this.#add({ type: 'put', key, value });
  }

  del(key: string): Promise<void> {
    return this.#add({ type: 'del', key });
  }

  /** Resolves when everything asked for before this call is written. */
  async flushed(): Promise<void> {
    while (this.#ops.length > 0 || this.#inFlight !== undefined) {
      if (this.#ops.length > 0) await this.#add(undefined);
      else await this.#inFlight?.catch(() => {});
    }
  }

  #add(op: JournalOp | undefined): Promise<void> {
    if (op !== undefined) this.#ops.push(op);
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    if (!this.#scheduled && this.#inFlight === undefined) {
      this.#scheduled = true;
      setImmediate(() => this.#write());
    }
    return done;
  }

  #write(): void {
    this.#scheduled = false;
    const ops = this.#ops;
    const waiters = this.#waiters;
    this.#ops = [];
    this.#waiters = [];
    const written = ops.length === 0 ? Promise.resolve() : this.#db.batch(ops);
    this.#inFlight = written.then(
      () => {
        this.batches += ops.length === 0 ? 0 : 1;
        for (const w of waiters) w.resolve();
      },
      (err: unknown) => {
        for (const w of waiters) w.reject(err);
      },
    );
    void this.#inFlight.finally(() => {
      this.#inFlight = undefined;
      if (this.#waiters.length > 0) this.#write();
    });
  }
}
