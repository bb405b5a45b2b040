/**
 * Rotation of the gateway's identity (ARCHITECTURE.md §4): the SVID at half-life with jitter
 * and the delegated CA at its own half-life with jitter (a renewal sends a CA CSR only when the
 * CA is due). One exchange at a time, chosen by what is still valid: renew while the SVID is
 * valid, recover by proof of possession of the delegated CA key when only the CA is (every
 * attestation method, so a join-token gateway outlives an outage longer than its SVID with no new
 * token), attest when nothing is. The result is stored in one batch with the bundle before it is
 * served (`#commit`).
 *
 * Failures (`refusal.ts` classifies them): a transient one backs off (the injected strategy, the
 * issuer's Retry-After, the circuit breaker) and fails over across endpoints; while the breaker is
 * open a cheap probe (`probe.ts`) notices the upstream's return, and the exchange runs at once
 * instead of after the breaker's full open period. A refusal a retry can cure falls through to
 * the next way at once (renew → recover → attest), then backs off; only a definitive refusal
 * (revoked, disabled, unknown gateway) stops, with one log line and the code in the status, until
 * an operator asks again (`rotateNow`) or the agent restarts. Nothing here runs while the clock is
 * untrusted.
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
import { type Failover, upstreamReason } from '../upstream/failover.ts';
import type { CircuitBreaker } from './breaker.ts';
import type { CaKeys } from './ca-keys.ts';
import type { ClockWatch } from './clock-watch.ts';
import { codeOf, type EventLog, iso } from './events.ts';
import {
  type ExchangeMode,
  type ExchangePlan,
  type ExchangeResult,
  exchange,
  PendingFinish,
} from './exchange.ts';
import type { ExpiryWatch } from './expiry.ts';
import type { LiveIdentity } from './identity.ts';
import type { Counters } from './metrics.ts';
import type { AgentOptions } from './options.ts';
import { type BackoffStrategy, refreshAt } from './policy.ts';
import { UpstreamProbe } from './probe.ts';
import { classifyFailure } from './refusal.ts';
import { RootSwitch } from './root-switch.ts';
import { type AgentBundleSource, type AgentSvidSource, bundleRecordOp } from './sources.ts';
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
  | 'tickMs'
  | 'probeMs'
  | 'onStep'
  | 'rootSwitchWindowMs'
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
  /** The upstream answered again after failures: follow the revocation feed first. */
  readonly onReconnect: () => void;
}

export class Rotation {
  readonly #d: RotationDeps;
  readonly #probe: UpstreamProbe;
  #rotating: Promise<void> | undefined;
  #nextRotationAt: number | undefined;
  #attempt = 0;
  /** Ways refused (curably) since the last success: the next attempt tries the next way. */
  #refused = new Set<ExchangeMode>();
  /** Set by a definitive refusal: no exchange until an operator asks or the agent restarts. */
  #halted = false;
  #state: Exclude<UpstreamState, 'clock-untrusted'> = 'unknown';
  /**
   * The last failure was the upstream being away (not a refusal): only then does the probe run
   * while the breaker is open. An issuer that answers but refuses must not be asked every probe
   * interval: its refusals wait out the breaker.
   */
  #away = false;
  #lastError: UpstreamFailure | undefined;
  /** When the delegated CA is due (its own half-life ±10 %), drawn once per CA certificate. */
  #caRefreshAt: number | undefined;
  #caSerial: string | undefined;
  /** A finish whose answer did not arrive: sent again first on the next try (exchange.ts). */
  readonly #pendingFinish = new PendingFinish();
  /** The issuer's CA switched: the delegated CA renews under the new root soon (root-switch.ts). */
  readonly #rootSwitch: RootSwitch;

  constructor(deps: RotationDeps) {
    this.#d = deps;
    this.#rootSwitch = new RootSwitch(deps.options.rootSwitchWindowMs, deps.options.random);
    deps.bundleSource.onChange(() => this.#onBundle());
    this.#probe = new UpstreamProbe({
      failover: deps.failover,
      breaker: deps.breaker,
      timers: deps.timers,
      event: deps.event,
      intervalMs: deps.options.probeMs,
      onUp: () => void this.rotate(),
    });
  }

  get nextRotationAt(): number | undefined {
    return this.#nextRotationAt;
  }

  /** How the upstream is doing; `clock-untrusted` whenever the clock is behind the floor. */
  get upstreamState(): UpstreamState {
    return this.#d.clockWatch.trusted() ? this.#state : 'clock-untrusted';
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
    this.#followRoot(live);
    this.#nextRotationAt = Math.min(refreshAt(live.svidNotBefore, live.svid.notAfter, r), this.#caRefreshAt);
  }

  /** A CA switch seen in the bundle brings the delegated CA's renewal forward (root-switch.ts). */
  #followRoot(live: LiveIdentity): number | undefined {
    const d = this.#d;
    let bundle: ReturnType<AgentBundleSource['getBundleFor']> | undefined;
    try {
      bundle = d.bundleSource.getBundleFor(d.options.trustDomain);
    } catch {
      return undefined; // no bundle yet: nothing to follow
    }
    const due = this.#rootSwitch.dueAt(live.ca, bundle, d.now());
    if (due === undefined) return undefined;
    if (due.at < (this.#caRefreshAt ?? Number.POSITIVE_INFINITY)) this.#caRefreshAt = due.at;
    if (due.fresh)
      d.event(
        'info',
        "the bundle's signing root did not sign the delegated CA; renewing it under the new root",
        'identity.root-switch',
        { root: bundle.roots[0]?.fingerprint256, caNotAfter: iso(live.ca.notAfter), renewBy: iso(due.at) },
      );
    return this.#caRefreshAt;
  }

  /** A new bundle: when it moves the CA's renewal before the armed rotation, arm it then. */
  #onBundle(): void {
    const d = this.#d;
    const live = d.svidSource.loaded();
    if (live === undefined || !d.running() || this.#halted) return;
    const at = this.#followRoot(live);
    // A rotation in flight or backing off schedules itself (and reads the CA's due time then).
    if (at === undefined || this.#rotating !== undefined || this.#state === 'failing') return;
    if (this.#nextRotationAt === undefined || at < this.#nextRotationAt) this.schedule(at - d.now());
  }

  /** At stop: forget an unanswered finish and release its new CA key (a TPM key is flushed). */
  dropPendingFinish(): Promise<void> {
    return this.#pendingFinish.drop(true);
  }

  /** Arm the next rotation `delayMs` from now. */
  schedule(delayMs: number): void {
    if (!this.#d.running()) return;
    const delay = Math.max(0, Math.round(delayMs));
    this.#nextRotationAt = this.#d.now() + delay;
    this.#d.timers.set('rotate', delay, () => void this.rotate());
  }

  /**
   * Rotate now, or join the rotation in flight. After a definitive refusal only an operator's
   * request (`operator: true`) tries again.
   */
  rotate(o: { operator?: boolean } = {}): Promise<void> {
    if (o.operator === true) this.#halted = false;
    if (this.#rotating === undefined)
      this.#rotating = this.#rotateOnce().finally(() => {
        this.#rotating = undefined;
      });
    return this.#rotating;
  }

  async #rotateOnce(): Promise<void> {
    const d = this.#d;
    if (!d.running() || this.#halted) return;
    if (!d.clockWatch.trusted()) {
      this.schedule(d.options.tickMs ?? 30_000);
      return;
    }
    if (!d.breaker.allow()) {
      this.schedule(d.breaker.remainingMs());
      if (this.#away) this.#probe.arm();
      return;
    }
    const plan = this.#plan();
    const tried: EndpointFailure[] = [];
    try {
      const got = await this.#exchange(plan, tried);
      if (d.running()) await this.#commit(plan, got);
    } catch (err) {
      // A failed exchange, or a store that could not take the result (nothing was served then).
      if (d.running()) this.#onFailure(plan.mode, err, tried);
    }
  }

  /** The way to try: renew while the SVID is valid, recover while the CA is, else attest. */
  #plan(): ExchangePlan {
    const current = this.#d.svidSource.current();
    if (current !== undefined && !this.#refused.has('renew'))
      return { mode: 'renew', current, renewCa: this.#caDue() };
    const ca = this.#d.caIdentity();
    if (ca !== undefined && !this.#refused.has('recover'))
      return { mode: 'recover', current: ca, renewCa: this.#caDue() };
    return { mode: 'attest' };
  }

  /** The delegated CA is renewed when its own refresh time has come, or it is no longer valid. */
  #caDue(): boolean {
    return (
      this.#d.caIdentity() === undefined ||
      this.#caRefreshAt === undefined ||
      this.#d.now() >= this.#caRefreshAt
    );
  }

  /** One exchange, failing over across endpoints; each endpoint's failure is noted in `tried`. */
  #exchange(plan: ExchangePlan, tried: EndpointFailure[]): Promise<ExchangeResult> {
    const d = this.#d;
    const o = d.options;
    const deps = {
      attestor: o.attestor,
      trustDomain: o.trustDomain,
      newKey: o.newKey,
      caKeys: d.caKeys,
      now: () => d.now(),
      onStep: o.onStep,
      serverNames: o.serverNames,
      pendingFinish: this.#pendingFinish,
    };
    return d.failover.run(
      (ep) => exchange(plan, ep, deps),
      (url, err) => {
        const failure = { endpoint: url, code: codeOf(err), reason: upstreamReason(err) };
        tried.push(failure);
        d.event('warn', 'upstream endpoint failed', 'upstream.failover', { ...failure });
      },
    );
  }

  /** Store what the issuer answered (one batch), then serve it, log it and schedule the next. */
  async #commit(plan: ExchangePlan, got: ExchangeResult): Promise<void> {
    const d = this.#d;
    const o = d.options;
    await o.store.batch([
      { type: 'put', name: NAMES.gateway, value: got.record },
      bundleRecordOp(o.trustDomain, got.bundle),
    ]);
    // The issuer vouched for its time in what it signed: the best evidence of the true time.
    await d.clockWatch.witness(got.live.svidNotBefore);
    await o.onStep?.('stored');
    const reconnected = this.#state !== 'ok';
    this.adopt(got.live);
    d.breaker.success();
    this.#probe.cancel();
    this.#attempt = 0;
    this.#refused.clear();
    this.#away = false;
    this.#state = 'ok';
    d.counters.inc('edgeward_rotations_total', { via: plan.mode });
    const what = {
      attest: 'identity obtained by attestation',
      renew: 'identity renewed',
      recover: 'identity recovered by proof of possession of the delegated CA key',
    };
    d.event('info', what[plan.mode], 'identity.rotated', {
      via: plan.mode,
      spiffeId: got.live.svid.spiffeId,
      notAfter: iso(got.live.svid.notAfter),
      caNotAfter: iso(got.live.ca.notAfter),
      caRenewed: plan.mode === 'attest' || plan.renewCa,
      endpoint: d.failover.current,
    });
    d.expiry.arm();
    d.svidSource.notify();
    d.bundleSource.adopt(d.options.trustDomain, got.bundle);
    this.schedule((this.#nextRotationAt ?? d.now()) - d.now());
    if (reconnected) d.onReconnect();
  }

  #onFailure(mode: ExchangeMode, err: unknown, tried: EndpointFailure[]): void {
    const d = this.#d;
    const code = codeOf(err);
    const reason = upstreamReason(err);
    const fields = err instanceof AgentError ? err.fields : {};
    const remoteCode = typeof fields.remoteCode === 'string' ? fields.remoteCode : undefined;
    // A final failure (refused, rejected) never went through failover: name its endpoint too.
    if (tried.length === 0 && typeof fields.endpoint === 'string')
      tried.push({ endpoint: fields.endpoint, code, reason });
    this.#lastError = {
      code,
      remoteCode,
      message: err instanceof Error ? err.message : String(err),
      at: d.clock.now(),
      reason,
      tried,
    };
    d.counters.inc('edgeward_rotation_failures_total', { reason: code });
    const kind = classifyFailure(mode, err);
    this.#away = kind === 'transient';
    if (kind === 'definitive') {
      // Revoked, disabled, unknown: no retry can cure it; a person must act.
      this.#halted = true;
      this.#state = 'refused';
      d.event(
        'error',
        `${mode} refused definitively by the issuer; stopped until an operator acts`,
        'identity.halted',
        {
          via: mode,
          remoteCode,
          endpoint: fields.endpoint,
        },
      );
      d.timers.cancel('rotate');
      this.#probe.cancel();
      this.#nextRotationAt = undefined;
      return;
    }
    if (kind === 'refused' && mode !== 'attest') {
      // Curable (PCR drift, an expired session, a proof the issuer cannot check): the next way at once.
      this.#refused.add(mode);
      this.#state = 'failing';
      d.event('warn', `${mode} refused by the issuer; trying the next way at once`, 'identity.refused', {
        via: mode,
        remoteCode,
        reason,
        endpoint: fields.endpoint,
        next: this.#plan().mode,
      });
      this.schedule(0);
      return;
    }
    if (kind === 'refused')
      d.event('warn', 'attest refused by the issuer; will retry', 'identity.refused', {
        via: mode,
        remoteCode,
        reason,
        endpoint: fields.endpoint,
        next: 'retry',
      });
    // Every way failed, or the upstream is away: back off, then start again from the best way.
    this.#refused.clear();
    this.#backOff(mode, code, reason, tried, fields);
  }

  #backOff(
    mode: ExchangeMode,
    code: string,
    reason: string | undefined,
    tried: EndpointFailure[],
    fields: Readonly<Record<string, unknown>>,
  ): void {
    const d = this.#d;
    d.breaker.failure();
    const retryAfter = typeof fields.retryAfterMs === 'number' ? fields.retryAfterMs : 0;
    let delay = Math.max(d.backoff.delay(this.#attempt), retryAfter);
    this.#attempt++;
    if (d.breaker.state === 'open') {
      delay = Math.max(delay, d.breaker.remainingMs());
      if (this.#away) this.#probe.arm();
      else this.#probe.cancel();
    }
    this.#state = 'failing';
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
