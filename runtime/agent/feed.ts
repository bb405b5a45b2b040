/**
 * Following the issuer's feeds (ARCHITECTURE.md §4): every `feedIntervalMs` (default 60 s),
 * while the agent holds a valid SVID, the clock is trusted and the breaker allows it, poll the
 * revocation feed from the last sequence seen, then the SPIFFE trust bundle. New revocations are
 * applied, persisted and logged; a changed bundle is decoded, served and persisted. The store is
 * written only when something changed (an unchanged feed every minute would wear the flash out).
 * A failed poll is counted and tried again at the next interval.
 *
 * @example
 * ```ts
 * const feed = new FeedFollower({ svidSource, bundleSource, revocations: () => set, ... });
 * feed.setBundle(stored.json, false);   // at start, from the cache
 * feed.arm(0);                          // poll now, then every interval
 * ```
 */
import type { Logger } from '../core/logger.ts';
import { NAMES } from '../store/records.ts';
import type { SealedStore } from '../store/sealed-store.ts';
import { type DecodedBundle, decodeBundle } from '../svid/bundle.ts';
import type { Failover } from '../upstream/failover.ts';
import { PATHS, type RevocationFeed } from '../upstream/protocol.ts';
import type { CircuitBreaker } from './breaker.ts';
import { codeOf, type EventLog } from './events.ts';
import type { Counters } from './metrics.ts';
import type { RevocationSet } from './revocations.ts';
import type { AgentBundleSource, AgentSvidSource } from './sources.ts';
import type { NamedTimers } from './timers.ts';

export interface FeedFollowerDeps {
  readonly trustDomain: string;
  readonly store: SealedStore;
  readonly svidSource: AgentSvidSource;
  readonly bundleSource: AgentBundleSource;
  /** The agent's current revocation set (replaced when the agent loads its cache). */
  readonly revocations: () => RevocationSet;
  readonly failover: Failover;
  readonly breaker: CircuitBreaker;
  readonly counters: Counters;
  readonly timers: NamedTimers;
  readonly log: Logger;
  readonly event: EventLog;
  readonly now: () => number;
  readonly clockTrusted: () => boolean;
  readonly running: () => boolean;
  /** Poll interval (default 60 s). */
  readonly feedIntervalMs: number | undefined;
}

export class FeedFollower {
  readonly #d: FeedFollowerDeps;

  constructor(deps: FeedFollowerDeps) {
    this.#d = deps;
  }

  /** Poll after `delayMs`, then every interval. */
  arm(delayMs: number): void {
    this.#d.timers.set('feed', delayMs, () => {
      void this.#poll().finally(() => this.arm(this.#d.feedIntervalMs ?? 60_000));
    });
  }

  /** Decode and serve a bundle's JSON (notifying when `persist`); undefined when it does not decode. */
  setBundle(json: string, persist: boolean): DecodedBundle | undefined {
    try {
      const b = decodeBundle(json);
      this.#d.bundleSource.set(this.#d.trustDomain, b);
      if (persist) this.#d.bundleSource.notify();
      return b;
    } catch (err) {
      this.#d.event('error', 'bundle does not decode; ignored', 'bundle.invalid', { code: codeOf(err) });
      return undefined;
    }
  }

  async #poll(): Promise<void> {
    const d = this.#d;
    const live = d.svidSource.current();
    if (live === undefined || !d.clockTrusted() || !d.breaker.allow()) return;
    try {
      const auth = { clientSvid: live.svid };
      const feed = await d.failover.run((ep) =>
        ep.get<RevocationFeed>(`${PATHS.revocations}?since=${d.revocations().sequence}`, auth),
      );
      if (!d.running()) return;
      const rev = d.revocations();
      const before = rev.sequence;
      const fresh = rev.apply(feed, d.now());
      rev.prune(d.now());
      // Written only when it changed: an unchanged feed every minute would wear the flash out.
      if (fresh.spiffeIds.length + fresh.serials.length > 0 || rev.sequence !== before) {
        await d.store.batch([{ type: 'put', name: NAMES.revocations, value: rev.toRecord() }]);
      }
      if (fresh.spiffeIds.length + fresh.serials.length > 0)
        d.event('info', 'revocations received', 'revocation.applied', {
          spiffeIds: fresh.spiffeIds,
          serials: fresh.serials,
          sequence: rev.sequence,
        });
      // The issuer answers the SPIFFE bundle itself (JSON text).
      const json = await d.failover.run((ep) => ep.get<unknown>(PATHS.bundle, auth));
      if (typeof json === 'string' && d.running()) {
        const seq = (JSON.parse(json) as { spiffe_sequence?: number }).spiffe_sequence;
        if (seq !== d.bundleSource.sequence && this.setBundle(json, true) !== undefined)
          await d.store.batch([
            {
              type: 'put',
              name: NAMES.bundle,
              value: { trustDomain: d.trustDomain, json, sequence: seq ?? 0 },
            },
          ]);
      }
    } catch (err) {
      d.counters.inc('edgeward_feed_failures_total', { reason: codeOf(err) });
      d.log.debug('feed poll failed', { event: 'feed.failed', code: codeOf(err) });
    }
  }
}
