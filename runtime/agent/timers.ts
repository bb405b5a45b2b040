/**
 * The agent's named timers (`rotate`, `expiry`, `tick`, `feed`) on the injected Clock: setting
 * one cancels its previous arming, nothing is armed unless the agent is running, and `stop()`
 * cancels them all.
 *
 * @example
 * ```ts
 * const timers = new NamedTimers(clock, () => state === 'started');
 * timers.set('tick', 30_000, onTick);
 * timers.cancelAll();
 * ```
 */
import type { Clock, Timer } from '../core/clock.ts';

export class NamedTimers {
  readonly #clock: Clock;
  readonly #running: () => boolean;
  readonly #timers = new Map<string, Timer>();

  constructor(clock: Clock, running: () => boolean) {
    this.#clock = clock;
    this.#running = running;
  }

  /** (Re)arm timer `name`; a no-op, after cancelling the old one, when the agent is not running. */
  set(name: string, delayMs: number, fn: () => void): void {
    this.#timers.get(name)?.cancel();
    if (!this.#running()) return;
    this.#timers.set(name, this.#clock.setTimer(name, delayMs, fn));
  }

  cancel(name: string): void {
    this.#timers.get(name)?.cancel();
  }

  cancelAll(): void {
    for (const t of this.#timers.values()) t.cancel();
    this.#timers.clear();
  }
}
