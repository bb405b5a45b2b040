/**
 * The persisted time floor (ARCHITECTURE.md §4): a lower bound on the true time. A gateway that
 * boots without an RTC may believe it is 1970 or last year; below the floor (minus a small
 * tolerance for NTP corrections) the clock is untrusted: nothing new is signed, no renewal is
 * made, and expiry is judged against the floor, never against the lie.
 *
 * The floor moves only on evidence, never on the wall clock alone. Evidence is the issuer's time
 * (the NotBefore of what it just signed: `witness`), and afterwards the monotonic time elapsed
 * since that anchor (`observe` raises the floor to the wall clock, but no faster than the
 * monotonic clock has moved). So a clock that jumps a week ahead does not drag the floor with it,
 * and when the clock is put right it is trusted at once. (Raising the floor to the raw wall clock,
 * the first design, left a gateway untrusted for as long as the wrong jump had been: the fleet
 * simulator's clock-jump scenario found it.)
 *
 * @example
 * ```ts
 * const floor = new TimeFloor(stored?.ms ?? 0, clock.monotonic());
 * floor.witness(svidNotBefore, clock.monotonic());   // after every issuance
 * floor.observe(clock.now(), clock.monotonic());     // on every tick
 * if (!floor.trusted(clock.now())) refuse();
 * ```
 */
export const DEFAULT_FLOOR_TOLERANCE_MS = 60_000;

export class TimeFloor {
  #floor: number;
  #anchorTime: number;
  #anchorMono: number;
  readonly #tolerance: number;

  /** `initial`: the persisted floor; `mono`: the monotonic clock now (the anchor for `observe`). */
  constructor(initial: number, mono: number, toleranceMs = DEFAULT_FLOOR_TOLERANCE_MS) {
    this.#floor = Number.isFinite(initial) ? initial : 0;
    this.#anchorTime = this.#floor;
    this.#anchorMono = mono;
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

  /** Evidence from outside (a time the issuer vouched for): raise the floor and re-anchor. */
  witness(time: number, mono: number): boolean {
    const moved = time > this.#floor;
    if (moved) this.#floor = time;
    this.#anchorTime = this.#floor;
    this.#anchorMono = mono;
    return moved;
  }

  /**
   * Raise the floor towards the wall clock `now`, but never past the anchor plus the monotonic
   * time elapsed since it. Returns true when the floor moved.
   */
  observe(now: number, mono: number): boolean {
    if (!this.trusted(now)) return false;
    const candidate = Math.min(now, this.#anchorTime + Math.max(0, mono - this.#anchorMono));
    if (candidate <= this.#floor) return false;
    this.#floor = candidate;
    return true;
  }
}
