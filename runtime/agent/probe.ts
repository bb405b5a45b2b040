/**
 * The first-success probe: while the circuit breaker is open, a cheap anonymous request (the
 * trust bundle, no client certificate, nothing signed) every `intervalMs` (default 15 s) notices
 * the upstream's return; the first answer closes the breaker and the exchange runs at once —
 * a TPM gateway re-attests (or any gateway recovers) within one probe interval of the issuer
 * coming back, not after the breaker's full open period. A failed probe does not count against
 * the breaker.
 *
 * @example
 * ```ts
 * const probe = new UpstreamProbe({ failover, breaker, timers, event, intervalMs, onUp: () => rotate() });
 * probe.arm();     // the breaker just opened
 * probe.cancel();  // an exchange succeeded
 * ```
 */
import type { Failover } from '../upstream/failover.ts';
import { PATHS } from '../upstream/protocol.ts';
import type { CircuitBreaker } from './breaker.ts';
import { codeOf, type EventLog } from './events.ts';
import type { NamedTimers } from './timers.ts';

export const DEFAULT_PROBE_MS = 15_000;

export interface UpstreamProbeDeps {
  readonly failover: Failover;
  readonly breaker: CircuitBreaker;
  readonly timers: NamedTimers;
  readonly event: EventLog;
  readonly intervalMs: number | undefined;
  /** The upstream answered: run the exchange now. */
  readonly onUp: () => void;
}

export class UpstreamProbe {
  readonly #d: UpstreamProbeDeps;

  constructor(deps: UpstreamProbeDeps) {
    if (deps.intervalMs !== undefined && !(deps.intervalMs > 0))
      throw new TypeError('probeMs must be positive');
    this.#d = deps;
  }

  /** Probe every interval while the breaker stays open. */
  arm(): void {
    this.#d.timers.set('probe', this.#d.intervalMs ?? DEFAULT_PROBE_MS, () => void this.#probe());
  }

  cancel(): void {
    this.#d.timers.cancel('probe');
  }

  async #probe(): Promise<void> {
    const d = this.#d;
    if (d.breaker.state === 'closed') return;
    try {
      await d.failover.run((ep) => ep.get<unknown>(PATHS.bundle));
    } catch (err) {
      d.event('info', 'upstream probe failed', 'upstream.probe', { ok: false, code: codeOf(err) });
      this.arm();
      return;
    }
    d.event('info', 'upstream answers again; exchanging now', 'upstream.probe', { ok: true });
    d.breaker.success();
    d.onUp();
  }
}
