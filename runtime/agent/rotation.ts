/**
 * Rotation of the gateway's identity (ARCHITECTURE.md §4): the SVID at half-life with jitter
 * and the delegated CA at its own half-life with jitter (a renewal sends a CA CSR only when the
 * CA is due). One exchange at a time: attest when there is nothing to renew (or a renewal was
 * refused for cause), renew otherwise; the result is stored in one batch with the bundle and the
 * time floor before it is served. Failures back off (the injected strategy, the issuer's
 * Retry-After, the circuit breaker) and fail over across upstream endpoints; a refusal for cause
 * re-attests at once or halts, as configured. Nothing here runs while the clock is untrusted.
 *
 * @example
 * ```ts
 * const rotation = new Rotation({ options, clock, clockWatch, breaker, failover, ... });
 * rotation.adopt(liveIdentityFromCache);     // computes nextRotationAt
 * rotation.schedule(rotation.nextRotationAt - now);
 * await rotation.rotate();                    // or on the timer
 * ```
 */
import type { Clock } from '../core/clock.ts';
import { AgentError } from '../errors.ts';
import { NAMES } from '../store/records.ts';
import type { StoreOp } from '../store/sealed-store.ts';
import { type Failover, upstreamReason } from '../upstream/failover.ts';
import type { CircuitBreaker } from './breaker.ts';
import type { CaKeys } from './ca-keys.ts';
import type { ClockWatch } from './clock-watch.ts';
import { codeOf, type EventLog, iso } from './events.ts';
import { type ExchangeMode, exchange } from './exchange.ts';
import type { ExpiryWatch } from './expiry.ts';
import type { LiveIdentity } from './identity.ts';
import type { Counters } from './metrics.ts';
import type { AgentOptions } from './options.ts';
import { type BackoffStrategy, refreshAt } from './policy.ts';
import type { AgentBundleSource, AgentSvidSource } from './sources.ts';
import type { EndpointFailure, UpstreamFailure, UpstreamState } from './status.ts';
import type { NamedTimers } from './timers.ts';

/** The agent options rotation reads. */
export type RotationOptions = Pick<
  AgentOptions,
  | 'trustDomain'
  | 'store'
  | 'attestor'
  | 'random'
  | 'newKey'
  | 'serverNames'
  | 'onRefusal'
  | 'refusalRetryMs'
  | 'tickMs'
  | 'onStep'
>;

export interface RotationDeps {
  readonly options: RotationOptions;
  /** Where the delegated CA key is made and opened (ca-keys.ts). */
  readonly caKeys: CaKeys;
  readonly clock: Clock;
  readonly clockWatch: ClockWatch;
  readonly backoff: BackoffStrategy;
  readonly breaker: CircuitBreaker;
  readonly failover: Failover;
  readonly svidSource: AgentSvidSource;
  readonly bundleSource: AgentBundleSource;
  readonly expiry: ExpiryWatch;
  readonly counters: Counters;
  readonly timers: NamedTimers;
  readonly event: EventLog;
  readonly now: () => number;
  readonly running: () => boolean;
  /** The loaded identity while its delegated CA is still valid. */
  readonly caIdentity: () => LiveIdentity | undefined;
}

export class Rotation {
  readonly #d: RotationDeps;
  #rotating: Promise<void> | undefined;
  #nextRotationAt: number | undefined;
  #attempt = 0;
  #forceAttest = false;
  #upstreamState: UpstreamState = 'unknown';
  #lastError: UpstreamFailure | undefined;
  /** When the delegated CA is due (its own half-life ±10 %), drawn once per CA certificate. */
  #caRefreshAt: number | undefined;
  #caSerial: string | undefined;

  constructor(deps: RotationDeps) {
    this.#d = deps;
  }

  get nextRotationAt(): number | undefined {
    return this.#nextRotationAt;
  }

  get upstreamState(): UpstreamState {
    return this.#upstreamState;
  }

  set upstreamState(s: UpstreamState) {
    this.#upstreamState = s;
  }

  get lastError(): UpstreamFailure | undefined {
    return this.#lastError;
  }

  /** The rotation in flight, if any. */
  get inFlight(): Promise<void> | undefined {
    return this.#rotating;
  }

  /** Make `live` the current identity and compute when to rotate it. */
  adopt(live: LiveIdentity): void {
    this.#d.svidSource.set(live);
    this.#d.expiry.reset();
    const r = this.#d.options.random;
    const caSerial = live.ca.chain[0]?.serialNumber;
    if (caSerial !== this.#caSerial || this.#caRefreshAt === undefined) {
      this.#caSerial = caSerial;
      this.#caRefreshAt = refreshAt(live.ca.notBefore, live.ca.notAfter, r);
    }
    this.#nextRotationAt = Math.min(refreshAt(live.svidNotBefore, live.svid.notAfter, r), this.#caRefreshAt);
  }

  /** The delegated CA is renewed when its own refresh time has come, or it is no longer valid. */
  #caDue(): boolean {
    return (
      this.#d.caIdentity() === undefined ||
      this.#caRefreshAt === undefined ||
      this.#d.now() >= this.#caRefreshAt
    );
  }

  /** Arm the next rotation `delayMs` from now. */
  schedule(delayMs: number): void {
    if (!this.#d.running()) return;
    const delay = Math.max(0, Math.round(delayMs));
    this.#nextRotationAt = this.#d.now() + delay;
    this.#d.timers.set('rotate', delay, () => void this.rotate());
  }

  /** Rotate now, or join the rotation in flight. */
  rotate(): Promise<void> {
    if (this.#rotating === undefined)
      this.#rotating = this.#rotateOnce().finally(() => {
        this.#rotating = undefined;
      });
    return this.#rotating;
  }

  async #rotateOnce(): Promise<void> {
    const d = this.#d;
    const o = d.options;
    if (!d.running()) return;
    const wall = d.clock.now();
    if (!d.clockWatch.trusted(wall)) {
      this.#upstreamState = 'clock-untrusted';
      this.schedule(o.tickMs ?? 30_000);
      return;
    }
    if (!d.breaker.allow()) {
      this.schedule(d.breaker.remainingMs());
      return;
    }
    const current = d.svidSource.current();
    const mode: ExchangeMode = this.#forceAttest || current === undefined ? 'attest' : 'renew';
    const renewCa = mode === 'attest' || this.#caDue();
    const tried: EndpointFailure[] = [];
    try {
      const got = await d.failover.run(
        (ep) =>
          exchange(
            mode,
            ep,
            {
              attestor: o.attestor,
              trustDomain: o.trustDomain,
              newKey: o.newKey,
              caKeys: d.caKeys,
              now: () => d.now(),
              onStep: o.onStep,
              serverNames: o.serverNames,
              renewCa,
            },
            current,
          ),
        (url, err) => {
          const failure = { endpoint: url, code: codeOf(err), reason: upstreamReason(err) };
          tried.push(failure);
          d.event('warn', 'upstream endpoint failed', 'upstream.failover', { ...failure });
        },
      );
      if (!d.running()) return;
      // The issuer vouched for its time in what it signed: the best evidence of the true time.
      d.clockWatch.witness(got.live.svidNotBefore);
      const ops: StoreOp[] = [
        { type: 'put', name: NAMES.gateway, value: got.record },
        {
          type: 'put',
          name: NAMES.bundle,
          value: { trustDomain: o.trustDomain, json: got.bundle.json, sequence: got.bundle.sequence },
        },
        { type: 'put', name: NAMES.floor, value: { ms: d.clockWatch.floor } },
      ];
      await o.store.batch(ops);
      d.clockWatch.markPersisted();
      await o.onStep?.('stored');
      const bundleChanged = got.bundle.sequence !== d.bundleSource.sequence;
      d.bundleSource.set(o.trustDomain, got.bundle);
      this.adopt(got.live);
      d.breaker.success();
      this.#attempt = 0;
      this.#forceAttest = false;
      this.#upstreamState = 'ok';
      d.counters.inc('edgeward_rotations_total', { via: mode });
      d.event(
        'info',
        mode === 'attest' ? 'identity obtained by attestation' : 'identity renewed',
        'identity.rotated',
        {
          via: mode,
          spiffeId: got.live.svid.spiffeId,
          notAfter: iso(got.live.svid.notAfter),
          caNotAfter: iso(got.live.ca.notAfter),
          caRenewed: renewCa,
          endpoint: d.failover.current,
        },
      );
      d.expiry.arm();
      d.svidSource.notify();
      if (bundleChanged) d.bundleSource.notify();
      this.schedule((this.#nextRotationAt ?? d.now()) - d.now());
    } catch (err) {
      if (!d.running()) return;
      this.#onFailure(mode, err, tried);
    }
  }

  #onFailure(mode: ExchangeMode, err: unknown, tried: EndpointFailure[]): void {
    const d = this.#d;
    const code = codeOf(err);
    const now = d.clock.now();
    const reason = upstreamReason(err);
    const fields = err instanceof AgentError ? err.fields : {};
    // A final failure (refused, rejected) never went through failover: name its endpoint too.
    if (tried.length === 0 && typeof fields.endpoint === 'string')
      tried.push({ endpoint: fields.endpoint, code, reason });
    this.#lastError = {
      code,
      message: err instanceof Error ? err.message : String(err),
      at: now,
      reason,
      tried,
    };
    d.counters.inc('edgeward_rotation_failures_total', { reason: code });
    if (code === 'ERR_UPSTREAM_REFUSED') {
      // Refused for cause (revoked, PCR drift): another identical request would be refused too.
      const reattest = mode === 'renew' && (d.options.onRefusal ?? 'reattest') === 'reattest';
      d.event('error', `${mode} refused by the issuer`, 'identity.refused', {
        via: mode,
        remoteCode: fields.remoteCode,
        reason,
        endpoint: fields.endpoint,
        next: reattest ? 'reattest' : 'halt',
      });
      this.#upstreamState = 'refused';
      if (reattest) {
        this.#forceAttest = true;
        this.schedule(0);
      } else this.schedule(d.options.refusalRetryMs ?? 60 * 60_000);
      return;
    }
    d.breaker.failure();
    const retryAfter = typeof fields.retryAfterMs === 'number' ? fields.retryAfterMs : 0;
    let delay = Math.max(d.backoff.delay(this.#attempt), retryAfter);
    this.#attempt++;
    if (d.breaker.state === 'open') delay = Math.max(delay, d.breaker.openUntil - now);
    this.#upstreamState = 'failing';
    d.event('warn', `${mode} failed; will retry`, 'identity.retry', {
      via: mode,
      code,
      reason,
      tried,
      attempt: this.#attempt,
      retryInMs: delay,
      breaker: d.breaker.state,
    });
    if (d.svidSource.current() === undefined && d.caIdentity() === undefined && d.svidSource.loaded())
      d.event('error', 'every cached credential has expired; still trying upstream', 'identity.none', {});
    this.schedule(delay);
  }
}
