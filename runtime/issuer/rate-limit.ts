/**
 * Fixed-window rate limits per key (client address, gateway name), on the injected clock.
 * A refusal answers 429 with how long until the window rolls over.
 *
 * @example
 * ```ts
 * const limits = new RateLimiter(clock, 60_000);
 * const wait = limits.take(`addr:${ip}`, 30); // undefined when allowed, else ms to wait
 * ```
 */
import type { Clock } from '../core/clock.ts';

export class RateLimiter {
  readonly #clock: Clock;
  readonly #windowMs: number;
  #windowStart = Number.NEGATIVE_INFINITY;
  #counts = new Map<string, number>();

  constructor(clock: Clock, windowMs: number) {
    if (!(windowMs > 0)) throw new TypeError('rate limit window must be positive');
    this.#clock = clock;
    this.#windowMs = windowMs;
  }

  /** Count one request for `key`; undefined when within `limit`, else the ms until it may retry. */
  take(key: string, limit: number): number | undefined {
    const now = this.#clock.now();
    if (now - this.#windowStart >= this.#windowMs || now < this.#windowStart) {
      this.#windowStart = now;
      this.#counts = new Map();
    }
    const n = (this.#counts.get(key) ?? 0) + 1;
    this.#counts.set(key, n);
    return n > limit ? this.#windowStart + this.#windowMs - now : undefined;
  }
}
