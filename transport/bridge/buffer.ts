/**
 * The bridge's offline buffer: QoS 1 messages in order in an abstract-level database (the agent
 * hands over a sublevel of its LevelDB; tests use memory-level), bounded by count and bytes.
 * When a new message would exceed a bound, the oldest are dropped first and counted in
 * `dropped` (exported as a metric by the agent). Keys are zero-padded sequence numbers, values
 * CBOR `{ topic, payload }`; the sequence resumes after a restart.
 */
import { decode, encode } from 'cbor-x';

export interface BufferDb {
  put(key: string, value: Uint8Array): Promise<void>;
  del(key: string): Promise<void>;
  iterator(options?: { limit?: number; reverse?: boolean }): AsyncIterable<[string, Uint8Array]> & {
    close(): Promise<void>;
  };
}

export interface Buffered {
  readonly key: string;
  readonly topic: string;
  readonly payload: Buffer;
}

const pad = (n: number): string => n.toString().padStart(16, '0');

export class OfflineBuffer {
  readonly #db: BufferDb;
  readonly #maxMessages: number;
  readonly #maxBytes: number;
  #seq = 0;
  #count = 0;
  #bytes = 0;
  #dropped = 0;
  readonly #sizes = new Map<string, number>();
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(db: BufferDb, maxMessages: number, maxBytes: number) {
    this.#db = db;
    this.#maxMessages = maxMessages;
    this.#maxBytes = maxBytes;
  }

  /** Open a buffer over `db`, counting what a previous run left in it. */
  static async open(db: BufferDb, limits: { maxMessages: number; maxBytes: number }): Promise<OfflineBuffer> {
    const b = new OfflineBuffer(db, limits.maxMessages, limits.maxBytes);
    const it = db.iterator();
    try {
      for await (const [k, v] of it) {
        b.#sizes.set(k, v.length);
        b.#count++;
        b.#bytes += v.length;
        b.#seq = Math.max(b.#seq, Number(k) + 1);
      }
    } finally {
      await it.close();
    }
    return b;
  }

  get size(): number {
    return this.#count;
  }
  get bytes(): number {
    return this.#bytes;
  }
  /** Messages dropped (oldest first) because a bound was reached. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Append a message; drops the oldest while a bound would be exceeded. Resolves when stored. */
  append(topic: string, payload: Buffer): Promise<void> {
    return this.#serial(async () => {
      const value = encode({ topic, payload });
      if (value.length > this.#maxBytes) {
        this.#dropped++;
        return;
      }
      while (
        this.#count > 0 &&
        (this.#count + 1 > this.#maxMessages || this.#bytes + value.length > this.#maxBytes)
      ) {
        const oldest = await this.#first();
        if (oldest === undefined) break;
        await this.#remove(oldest.key);
        this.#dropped++;
      }
      const key = pad(this.#seq++);
      await this.#db.put(key, value);
      this.#sizes.set(key, value.length);
      this.#count++;
      this.#bytes += value.length;
    });
  }

  /** The oldest message, or undefined when empty. */
  peek(): Promise<Buffered | undefined> {
    return this.#serial(() => this.#first());
  }

  /** Remove a message once the upstream acknowledged it. */
  ack(key: string): Promise<void> {
    return this.#serial(() => this.#remove(key));
  }

  async #first(): Promise<Buffered | undefined> {
    const it = this.#db.iterator({ limit: 1 });
    try {
      for await (const [key, v] of it) {
        const m = decode(v) as { topic: string; payload: Uint8Array };
        return { key, topic: m.topic, payload: Buffer.from(m.payload) };
      }
    } finally {
      await it.close();
    }
    return undefined;
  }

  async #remove(key: string): Promise<void> {
    const size = this.#sizes.get(key);
    if (size === undefined) return;
    await this.#db.del(key);
    this.#sizes.delete(key);
    this.#count--;
    this.#bytes -= size;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
