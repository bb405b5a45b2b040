/**
 * A circuit breaker for the upstream: after `failures` consecutive failures it opens for
 * `openMs` and no call is made; then one trial call is let through (half-open): success closes
 * it, failure opens it again for another `openMs`. Time comes from the injected clock.
 *
 * @example
 * ```ts
 * if (!breaker.allow()) return schedule(breaker.openUntil - clock.now());
 * try { await call(); breaker.success(); } catch { breaker.failure(); }
 * ```
 */
import type { Clock } from '../core/clock.ts';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  readonly failures: number;
  readonly openMs: number;
}

export const DEFAULT_BREAKER: BreakerOptions = { failures: 5, openMs: 5 * 60_000 };

export class CircuitBreaker {
  readonly #o: BreakerOptions;
  readonly #clock: Clock;
  #consecutive = 0;
  #openUntil = 0;
  #opened = false;

  constructor(o: BreakerOptions, clock: Clock) {
    if (!(o.failures >= 1) || !(o.openMs > 0))
      throw new TypeError('breaker: need failures >= 1 and openMs > 0');
    this.#o = o;
    this.#clock = clock;
  }

  get state(): BreakerState {
    if (!this.#opened) return 'closed';
    return this.#clock.now() < this.#openUntil ? 'open' : 'half-open';
  }

  /** Epoch ms when an open breaker lets the next trial through. */
  get openUntil(): number {
    return this.#openUntil;
  }

  get consecutiveFailures(): number {
    return this.#consecutive;
  }

  /** True when a call may be made now. */
  allow(): boolean {
    return this.state !== 'open';
  }

  success(): void {
    this.#consecutive = 0;
    this.#opened = false;
  }

  failure(): void {
    this.#consecutive++;
    if (this.#opened || this.#consecutive >= this.#o.failures) {
      this.#opened = true;
      this.#openUntil = this.#clock.now() + this.#o.openMs;
    }
  }
}
