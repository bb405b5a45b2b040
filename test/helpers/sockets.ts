/**
 * TEST ONLY: socket waits for the listener-abuse suites: `closedWithin` resolves with the ms
 * until a socket closes and rejects past a bound (the bound under test), so a listener that
 * keeps a hostile connection open fails the test instead of hanging it.
 *
 * @example
 * ```ts
 * const ms = await closedWithin(socket, 2_000, 'an idle connection');
 * ```
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/** Resolves with the ms until `s` closes (0 if it already has); rejects past `ms`. */
export function closedWithin(s: Socket, ms: number, what: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve(0);
    const timer = setTimeout(() => reject(new Error(`${what}: still open after ${ms} ms`)), ms);
    s.once('close', () => {
      clearTimeout(timer);
      resolve(performance.now() - t0);
    });
  });
}
