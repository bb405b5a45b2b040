/**
 * Expiry of the agent's own credentials: a timer armed for the next NotAfter of the gateway
 * SVID or the delegated device CA, which reports each expiry once (the SVID is no longer served,
 * no device can be signed) and says so when nothing valid is left. Nothing expired is served;
 * the agent keeps trying upstream (ARCHITECTURE.md §4).
 *
 * @example
 * ```ts
 * const expiry = new ExpiryWatch({ svidSource, timers, event, now, running });
 * expiry.reset();   // a new identity was adopted
 * expiry.arm();     // after start, every rotation, clock change
 * ```
 */
import { type EventLog, iso } from './events.ts';
import type { AgentSvidSource } from './sources.ts';
import type { NamedTimers } from './timers.ts';

export interface ExpiryWatchDeps {
  readonly svidSource: AgentSvidSource;
  readonly timers: NamedTimers;
  readonly event: EventLog;
  readonly now: () => number;
  readonly running: () => boolean;
}

export class ExpiryWatch {
  readonly #d: ExpiryWatchDeps;
  #expiredReported = { svid: false, ca: false };

  constructor(deps: ExpiryWatchDeps) {
    this.#d = deps;
  }

  /** A new identity: its expiries have not been reported yet. */
  reset(): void {
    this.#expiredReported = { svid: false, ca: false };
  }

  /** Report what has expired and arm the timer for the next expiry. */
  arm(): void {
    const { svidSource, timers, event } = this.#d;
    const live = svidSource.loaded();
    timers.cancel('expiry');
    if (live === undefined || !this.#d.running()) return;
    const now = this.#d.now();
    const svidLeft = live.svid.notAfter - now;
    const caLeft = live.ca.notAfter - now;
    if (svidLeft <= 0 && !this.#expiredReported.svid) {
      this.#expiredReported.svid = true;
      event('error', 'gateway SVID expired; not serving it, still trying upstream', 'identity.svid-expired', {
        spiffeId: live.svid.spiffeId,
        notAfter: iso(live.svid.notAfter),
      });
      svidSource.notify();
    }
    if (caLeft <= 0 && !this.#expiredReported.ca) {
      this.#expiredReported.ca = true;
      event('error', 'delegated device CA expired; no device can be signed', 'identity.ca-expired', {
        notAfter: iso(live.ca.notAfter),
      });
    }
    const next = [svidLeft, caLeft].filter((d) => d > 0);
    if (next.length > 0) timers.set('expiry', Math.min(...next), () => this.arm());
    else event('error', 'every cached credential has expired; still trying upstream', 'identity.none', {});
  }
}
