/**
 * Following the issuer's feeds (ARCHITECTURE.md §4): every `feedIntervalMs` (default 60 s),
 * and at once when the upstream answers again after failures, while the agent holds a valid
 * SVID, the clock is trusted and the breaker allows it: poll the revocation feed from the last
 * sequence seen (first: revoked sessions close before anything else happens), then the SPIFFE
 * trust bundle, then upload the device certificates issued since the last accepted upload
 * (`issued-log.ts`). New revocations are applied, persisted and logged; a changed bundle is
 * decoded, persisted and adopted (`AgentBundleSource.adopt`). The store is written only when
 * something changed (an unchanged feed every minute would wear the flash out). A failed poll is
 * counted and tried again at the next interval.
 *
 * @example
 * ```ts
 * const feed = new FeedFollower({ svidSource, bundleSource, revocations: () => set, ... });
 * feed.loadBundle(stored.json);   // at start, from the cache
 * feed.arm(0);                    // poll now, then every interval
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
import type { IssuedLog } from './issued-log.ts';
import type { Counters } from './metrics.ts';
import type { RevocationSet } from './revocations.ts';
import { type AgentBundleSource, type AgentSvidSource, bundleRecordOp } from './sources.ts';
import type { NamedTimers } from './timers.ts';

export interface FeedFollowerDeps {
  readonly trustDomain: string;
  readonly store: SealedStore;
  readonly svidSource: AgentSvidSource;
  readonly bundleSource: AgentBundleSource;
  /** The agent's current revocation set (replaced when the agent loads its cache). */
  readonly revocations: () => RevocationSet;
  readonly issuedLog: IssuedLog;
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

  /** Serve the bundle stored at the last run (agent start); ignored when it does not decode. */
  loadBundle(json: string): void {
    const b = this.#decode(json);
    if (b !== undefined) this.#d.bundleSource.adopt(this.#d.trustDomain, b);
  }

  #decode(json: string): (DecodedBundle & { json: string }) | undefined {
    try {
      return { ...decodeBundle(json), json };
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
        const b = seq === d.bundleSource.sequence ? undefined : this.#decode(json);
        if (b !== undefined) {
          await d.store.batch([bundleRecordOp(d.trustDomain, b)]);
          d.bundleSource.adopt(d.trustDomain, b);
        }
      }
      // Last: the device certificates issued since the last accepted upload, for the issuer's audit.
      if (d.running()) await d.issuedLog.upload(d.failover, auth);
    } catch (err) {
      d.counters.inc('edgeward_feed_failures_total', { reason: codeOf(err) });
      d.log.debug('feed poll failed', { event: 'feed.failed', code: codeOf(err) });
    }
  }
}
