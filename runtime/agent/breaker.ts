/**
 * A circuit breaker for the upstream: after `failures` consecutive failures it opens for
 * `openMs` and no call is made; then one trial call is let through (half-open): success closes
 * it, failure opens it again for another `openMs`. It times itself on the injected clock's
 * monotonic reading, so a wall-clock jump neither holds it open nor lets it close early.
 *
 * @example
 * ```ts
 * if (!breaker.allow()) return schedule(breaker.remainingMs());
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
  /** Monotonic ms at which an open breaker lets the next trial through. */
  #openUntilMono = 0;
  #opened = false;

  constructor(o: BreakerOptions, clock: Clock) {
    if (!(o.failures >= 1) || !(o.openMs > 0))
      throw new TypeError('breaker: need failures >= 1 and openMs > 0');
    this.#o = o;
    this.#clock = clock;
  }

  get state(): BreakerState {
    if (!this.#opened) return 'closed';
    return this.remainingMs() > 0 ? 'open' : 'half-open';
  }

  /** Milliseconds until an open breaker lets the next trial through (0 when it would now). */
  remainingMs(): number {
    return Math.max(0, this.#openUntilMono - this.#clock.monotonic());
  }

  /** The same moment on the wall clock, for status displays. */
  get openUntil(): number {
    return this.#clock.now() + this.remainingMs();
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
      this.#openUntilMono = this.#clock.monotonic() + this.#o.openMs;
    }
  }
}
