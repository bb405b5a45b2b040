/**
 * Fixed-window rate limits per key (client address, gateway name), on the injected clock. Windows
 * are aligned to multiples of the window length, so every replica counts the same window. A
 * refusal answers 429 with how long until the window rolls over.
 *
 * One process (LevelDB) counts in memory. Replicas (PostgreSQL) count through the store, so N
 * replicas do not allow N times the limit: each request takes the next value of the store
 * sequence `rl.{window}.{hash of key}` (`nextSequence`: one statement, an atomic increment, no row
 * held past it), which is exactly how many requests for the key, on any replica, came before it
 * and with it. It is allowed when that is at most `limit`: exactly `limit` requests per key and
 * window pass, whatever the interleaving. Once a replica has seen a key over its limit it
 * refuses locally for the rest of the window, writing nothing (a flood costs no store writes).
 * Past windows' sequences are dropped by `prune`.
 *
 * @example
 * ```ts
 * const limits = new RateLimiter(clock, 60_000, store);
 * const wait = await limits.take(`a:${ip}`, 30); // undefined when allowed, else ms to wait
 * ```
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import type { IssuerStore } from './store.ts';

const PREFIX = 'rl.';
/** Rows of the layout before counters (`rl/{window}/{key}/{n}`): only pruned. */
const OLD_PREFIX = 'rl/';
const pad = (n: number): string => String(n).padStart(15, '0');
/** The counter of `key` in `window`: a store sequence name ([a-z0-9._-], 51 characters). */
const counterOf = (window: number, key: string): string =>
  `${PREFIX}${pad(window)}.${createHash('sha256').update(key).digest('hex').slice(0, 32)}`;

export class RateLimiter {
  readonly #clock: Clock;
  readonly #windowMs: number;
  readonly #store: IssuerStore | undefined;
  #window = Number.NEGATIVE_INFINITY;
  #counts = new Map<string, number>();

  /** `shared`: count through this store (replicas); absent: in memory (one process). */
  constructor(clock: Clock, windowMs: number, shared?: IssuerStore) {
    if (!(windowMs > 0)) throw new TypeError('rate limit window must be positive');
    this.#clock = clock;
    this.#windowMs = windowMs;
    this.#store = shared;
  }

  /** Count one request for `key`; undefined when within `limit`, else the ms until it may retry. */
  async take(key: string, limit: number): Promise<number | undefined> {
    const now = this.#clock.now();
    const window = Math.floor(now / this.#windowMs) * this.#windowMs;
    if (window !== this.#window) {
      this.#window = window;
      this.#counts = new Map();
    }
    const wait = window + this.#windowMs - now;
    const n = (this.#counts.get(key) ?? 0) + 1;
    const store = this.#store;
    if (store === undefined) {
      this.#counts.set(key, n);
      return n > limit ? wait : undefined;
    }
    // Shared: the local count only remembers "over" (limit + 2), to refuse without the store.
    if (n > limit + 1) return wait;
    if ((await store.nextSequence(counterOf(window, key))) <= limit) return undefined;
    if (window === this.#window) this.#counts.set(key, limit + 2);
    return wait;
  }

  /** Drop the shared counters of windows that are over (and rows of the earlier layout). */
  async prune(): Promise<void> {
    const store = this.#store;
    if (store === undefined) return;
    const current = Math.floor(this.#clock.now() / this.#windowMs) * this.#windowMs;
    await store.dropSequences(PREFIX, `${PREFIX}${pad(current)}`);
    for (;;) {
      const old = await store.list(OLD_PREFIX, { limit: 1000 });
      if (old.length === 0) return;
      await store.batch(old.map(([key]) => ({ type: 'del' as const, key })));
    }
  }
}
