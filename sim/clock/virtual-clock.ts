/**
 * A virtual clock for tests and simulations: time moves only when `advance` or `set` is called,
 * and due timers run in deadline order (ties in creation order). Rotation, expiry and backoff are
 * tested with it without sleeping.
 *
 * @example
 * ```ts
 * const clock = new VirtualClock(Date.UTC(2026, 0, 1));
 * clock.setTimer('renew', 30_000, renew);
 * await clock.advance(30_000); // renew() has run
 * ```
 */
import type { Clock, Timer } from '../../runtime/core/clock.ts';

interface Pending {
  readonly name: string;
  readonly due: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
}

export class VirtualClock implements Clock {
  #now: number;
  #mono = 0;
  #seq = 0;
  #pending: Pending[] = [];

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  /** Moves with `advance`, never with `set`: wall-clock jumps do not touch it. */
  monotonic(): number {
    return this.#mono;
  }

  setTimer(name: string, delayMs: number, fn: () => void): Timer {
    const entry: Pending = {
      name,
      due: this.#now + Math.max(0, delayMs),
      seq: this.#seq++,
      fn,
      cancelled: false,
    };
    this.#pending.push(entry);
    return {
      cancel: () => {
        entry.cancelled = true;
      },
    };
  }

  /** Names of the timers still waiting, soonest first. */
  pendingTimers(): { name: string; due: number }[] {
    return this.#live().map(({ name, due }) => ({ name, due }));
  }

  /**
   * Move time forward by `ms`, running every timer that falls due, in order. Between timers the
   * microtask queue is drained, so async work a timer starts can schedule further timers.
   */
  async advance(ms: number): Promise<void> {
    if (ms < 0) throw new RangeError('advance() only moves forward; use set() for a jump back');
    const target = this.#now + ms;
    for (;;) {
      await drainMicrotasks();
      const next = this.#live()[0];
      if (next === undefined || next.due > target) break;
      this.#mono += next.due - this.#now;
      this.#now = next.due;
      next.cancelled = true;
      next.fn();
    }
    this.#mono += target - this.#now;
    this.#now = target;
    await drainMicrotasks();
  }

  /**
   * Jump the wall clock to `ms` (forwards or backwards) without running timers, as a gateway's
   * clock does when NTP or an RTC corrects it. Pending timers keep their remaining delay.
   */
  set(ms: number): void {
    const delta = ms - this.#now;
    for (const p of this.#pending) (p as { due: number }).due = p.due + delta;
    this.#now = ms;
  }

  #live(): Pending[] {
    this.#pending = this.#pending.filter((p) => !p.cancelled);
    return [...this.#pending].sort((a, b) => a.due - b.due || a.seq - b.seq);
  }
}

async function drainMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}
