/**
 * The agent's watch over the wall clock (ARCHITECTURE.md §4): the one owner of the time floor
 * (`time-floor.ts`) — it alone raises it (`witness`, the tick) and writes it to the store — and
 * ticks every `tickMs` to notice a clock that
 * fell behind the floor (untrusted: nothing is signed or renewed), came back to sanity, or
 * jumped forward (rotation is checked at once). A jump is the wall clock moving differently
 * from the monotonic clock between two ticks.
 *
 * @example
 * ```ts
 * const watch = new ClockWatch({ clock, store, counters, timers, event, running, ... });
 * await watch.load();              // at start: the persisted floor
 * watch.arm();                     // the tick
 * if (!watch.trusted()) refuse();
 * ```
 */
import type { Clock } from '../core/clock.ts';
import { type FloorRecord, NAMES } from '../store/records.ts';
import type { SealedStore } from '../store/sealed-store.ts';
import { type EventLog, iso } from './events.ts';
import type { Counters } from './metrics.ts';
import { DEFAULT_FLOOR_TOLERANCE_MS, TimeFloor } from './time-floor.ts';
import type { NamedTimers } from './timers.ts';

export interface ClockWatchDeps {
  readonly clock: Clock;
  readonly store: SealedStore;
  readonly counters: Counters;
  readonly timers: NamedTimers;
  readonly event: EventLog;
  /** True while the agent is started (not before, not after stop). */
  readonly running: () => boolean;
  /** Clock watch interval (default 30 s). */
  readonly tickMs: number | undefined;
  readonly floorToleranceMs: number | undefined;
  /** Persist the floor when it moved by this much (default 5 min; flash wears out). */
  readonly floorPersistMs: number | undefined;
  /** The clock is sane again, or jumped forward: re-arm expiry and check rotation now. */
  readonly recheck: () => void;
}

export class ClockWatch {
  readonly #d: ClockWatchDeps;
  #floor = new TimeFloor(0, 0);
  #lastMono = 0;
  #floorPersisted = 0;
  #lastTick = 0;
  #clockTrusted = true;

  constructor(deps: ClockWatchDeps) {
    this.#d = deps;
  }

  /** The time expiry is judged by: the wall clock, never below the floor. */
  now(): number {
    return this.#floor.effectiveNow(this.#d.clock.now());
  }

  /** False while the wall clock (or `wall`) is behind the floor beyond the tolerance. */
  trusted(wall = this.#d.clock.now()): boolean {
    return this.#floor.trusted(wall);
  }

  get floor(): number {
    return this.#floor.value;
  }

  /** Load the persisted floor and judge the clock against it (agent start). */
  async load(): Promise<void> {
    const floorRec = await this.#d.store.get<FloorRecord>(NAMES.floor);
    const mono = this.#d.clock.monotonic();
    this.#floor = new TimeFloor(
      floorRec?.ms ?? 0,
      mono,
      this.#d.floorToleranceMs ?? DEFAULT_FLOOR_TOLERANCE_MS,
    );
    this.#floorPersisted = this.#floor.value;
    const wall = this.#d.clock.now();
    this.#lastTick = wall;
    this.#lastMono = mono;
    this.#clockTrusted = this.#floor.trusted(wall);
    if (!this.#clockTrusted) this.#reportUntrusted(wall);
  }

  /**
   * The issuer vouched for `time` in what it signed (after every issuance): the best evidence of
   * the true time. The raised floor is written at once.
   */
  async witness(time: number): Promise<void> {
    this.#floor.witness(time, this.#d.clock.monotonic());
    if (this.#floor.value !== this.#floorPersisted) await this.#persistFloor();
  }

  /** Arm the tick; it re-arms itself after each run. */
  arm(): void {
    const tickMs = this.#d.tickMs ?? 30_000;
    this.#d.timers.set('tick', tickMs, () => {
      void this.#tick(tickMs).finally(() => this.arm());
    });
  }

  async #tick(tickMs: number): Promise<void> {
    const { clock, event } = this.#d;
    const wall = clock.now();
    const mono = clock.monotonic();
    // A jump is the wall clock moving differently from the monotonic clock.
    const jump = wall - this.#lastTick - (mono - this.#lastMono);
    this.#lastTick = wall;
    this.#lastMono = mono;
    const trusted = this.#floor.trusted(wall);
    if (!trusted) {
      if (this.#clockTrusted) this.#reportUntrusted(wall);
      this.#clockTrusted = false;
      return;
    }
    if (!this.#clockTrusted) {
      this.#clockTrusted = true;
      event('info', 'clock is sane again (at or above the time floor)', 'clock.trusted', {
        now: iso(wall),
      });
      this.#d.recheck();
    }
    if (
      this.#floor.observe(wall, mono) &&
      this.#floor.value - this.#floorPersisted >= (this.#d.floorPersistMs ?? 300_000)
    )
      await this.#persistFloor();
    if (jump > tickMs) {
      event('warn', 'clock jumped forward; checking rotation now', 'clock.jump', {
        jumpMs: jump,
      });
      this.#d.counters.inc('edgeward_clock_jumps_total');
      this.#d.recheck();
    }
  }

  #reportUntrusted(wall: number): void {
    this.#d.counters.inc('edgeward_clock_untrusted_total');
    this.#d.event(
      'error',
      'clock is behind the time floor: untrusted, no signing until it is sane',
      'clock.untrusted',
      {
        now: iso(wall),
        floor: iso(this.#floor.value),
      },
    );
  }

  async #persistFloor(): Promise<void> {
    if (!this.#d.running()) return;
    await this.#d.store.batch([{ type: 'put', name: NAMES.floor, value: { ms: this.#floor.value } }]);
    this.#floorPersisted = this.#floor.value;
  }
}
