/**
 * The persisted time floor (ARCHITECTURE.md §4): the latest wall-clock time this gateway has
 * trusted. A gateway that boots without an RTC may believe it is 1970 or last year; below the
 * floor (minus a small tolerance for NTP corrections) the clock is untrusted: nothing new is
 * signed, no renewal is made, and expiry is judged against the floor, never against the lie.
 *
 * @example
 * ```ts
 * const floor = new TimeFloor(stored?.ms ?? 0, 60_000);
 * if (!floor.trusted(clock.now())) refuse();
 * const now = floor.effectiveNow(clock.now());
 * ```
 */
export const DEFAULT_FLOOR_TOLERANCE_MS = 60_000;

export class TimeFloor {
  #floor: number;
  readonly #tolerance: number;

  constructor(initial: number, toleranceMs = DEFAULT_FLOOR_TOLERANCE_MS) {
    this.#floor = Number.isFinite(initial) ? initial : 0;
    this.#tolerance = toleranceMs;
  }

  get value(): number {
    return this.#floor;
  }

  /** False when `now` is behind the floor by more than the tolerance. */
  trusted(now: number): boolean {
    return now >= this.#floor - this.#tolerance;
  }

  /** The time to judge expiry by: never earlier than the floor. */
  effectiveNow(now: number): number {
    return Math.max(now, this.#floor);
  }

  /** Raise the floor to `now` when the clock is trusted; returns true when it moved. */
  observe(now: number): boolean {
    if (!this.trusted(now) || now <= this.#floor) return false;
    this.#floor = now;
    return true;
  }
}
