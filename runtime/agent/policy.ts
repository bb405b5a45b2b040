/**
 * When to rotate and how long to wait after a failure (ARCHITECTURE.md §4).
 *
 * - `refreshAt`: at half of the lifetime, ±10 % of that half (so 45–55 % of the lifetime),
 *   drawn from the injected `Random` so a fleet that booted together spreads its renewals.
 * - `fullJitterBackoff`: attempt n waits a uniform draw from [0, min(cap, initial·factorⁿ)]
 *   ("full jitter"); it is an injected strategy, so tests and other policies can swap it.
 *
 * @example
 * ```ts
 * const at = refreshAt(svid.notBefore, svid.notAfter, random);
 * const backoff = fullJitterBackoff({ initialMs: 1000, factor: 2, capMs: 300_000 }, random);
 * clock.setTimer('rotate', backoff.delay(attempt), rotate);
 * ```
 */
import type { Random } from '../core/random.ts';

/** Jitter of the half-life, as a fraction of it. */
export const REFRESH_JITTER = 0.1;

/** Epoch ms at which a credential valid from `notBefore` to `notAfter` should be renewed. */
export function refreshAt(
  notBefore: number,
  notAfter: number,
  random: Random,
  jitter = REFRESH_JITTER,
): number {
  const half = (notAfter - notBefore) / 2;
  const j = (random.float() * 2 - 1) * jitter;
  return Math.round(notBefore + half * (1 + j));
}

export interface BackoffStrategy {
  /** Delay before retry number `attempt` (0 for the first retry). */
  delay(attempt: number): number;
}

export interface BackoffOptions {
  readonly initialMs: number;
  readonly factor: number;
  readonly capMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 1_000, factor: 2, capMs: 5 * 60_000 };

export function fullJitterBackoff(o: BackoffOptions, random: Random): BackoffStrategy {
  if (!(o.initialMs > 0) || !(o.factor >= 1) || !(o.capMs >= o.initialMs))
    throw new TypeError('backoff: need initialMs > 0, factor >= 1, capMs >= initialMs');
  return {
    delay(attempt) {
      const ceiling = Math.min(o.capMs, o.initialMs * o.factor ** Math.max(0, attempt));
      return Math.floor(random.float() * ceiling);
    },
  };
}
