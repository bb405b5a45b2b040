/**
 * The gateway agent: serves the cached identity at once, then attests or renews, rotates the SVID
 * at half-life with jitter and the delegated CA at its own half-life with jitter (a renewal sends
 * a CA CSR only when the CA is due), survives upstream outages within the credentials' own
 * lifetimes, follows the revocation feed, and watches the clock (ARCHITECTURE.md §4).
 *
 * Lifecycle (STYLE.md rule 6): the constructor only stores dependencies; `start()` loads the
 * store and serves what is valid, then schedules the first exchange and resolves — it never waits
 * for the upstream; `stop()` is idempotent and cancels every timer; later calls fail with
 * `ERR_AGENT_CLOSED`.
 *
 * Consumers use `agent.svidSource`, `agent.bundleSource`, `agent.revocations` and
 * `agent.deviceSigner`; the transport never imports this file.
 *
 * @example
 * ```ts
 * const agent = new Agent({ trustDomain, store, attestor, upstream, clock, random, logger, newKey });
 * await agent.start();
 * agent.svidSource.onChange(() => server.setSecureContext(contextFor(agent.svidSource.getX509Svid())));
 * ```
 */
import type { KeyObject } from 'node:crypto';
import type { Attestor } from '../../attestors/attestor.ts';
import type { Clock, Timer } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { AgentError } from '../errors.ts';
import {
  type BundleRecord,
  type DeviceRecord,
  deviceName,
  type FloorRecord,
  type GatewayRecord,
  NAMES,
  type RevocationRecord,
} from '../store/records.ts';
import type { SealedStore, StoreOp } from '../store/sealed-store.ts';
import { type DecodedBundle, decodeBundle } from '../svid/bundle.ts';
import { Failover, upstreamReason } from '../upstream/failover.ts';
import { PATHS, type RevocationFeed } from '../upstream/protocol.ts';
import type { Upstream } from '../upstream/types.ts';
import { type BreakerOptions, CircuitBreaker, DEFAULT_BREAKER } from './breaker.ts';
import { AgentDeviceSigner } from './device-signer.ts';
import { type ExchangeMode, exchange, type RotationStep } from './exchange.ts';
import { type LiveIdentity, liveIdentity } from './identity.ts';
import { Counters } from './metrics.ts';
import { type BackoffStrategy, DEFAULT_BACKOFF, fullJitterBackoff, refreshAt } from './policy.ts';
import { RevocationSet } from './revocations.ts';
import { AgentBundleSource, AgentSvidSource } from './sources.ts';
import { DEFAULT_FLOOR_TOLERANCE_MS, TimeFloor } from './time-floor.ts';

export interface AgentOptions {
  readonly trustDomain: string;
  readonly store: SealedStore;
  readonly attestor: Attestor;
  readonly upstream: Upstream;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly newKey: () => KeyObject;
  /** Broker host names to ask for on the gateway SVID (DNS/IP SANs). */
  readonly serverNames?: readonly string[];
  readonly backoff?: BackoffStrategy;
  readonly breaker?: BreakerOptions;
  /** What a renewal refused for cause leads to: re-attest at once (default), or halt. */
  readonly onRefusal?: 'reattest' | 'halt';
  /** After a refused attestation, try again this much later (default 1 h). */
  readonly refusalRetryMs?: number;
  /** Revocation feed and bundle poll interval (default 60 s). */
  readonly feedIntervalMs?: number;
  /** Clock watch interval (default 30 s): time floor, forward jumps, overdue timers. */
  readonly tickMs?: number;
  readonly floorToleranceMs?: number;
  /** Persist the time floor when it moved by this much (default 5 min; flash wears out). */
  readonly floorPersistMs?: number;
  readonly deviceTtlMs?: number;
  /** Test hook marking the steps of a rotation (kill -9 tests). */
  readonly onStep?: (step: RotationStep) => void | Promise<void>;
}

/** The last failed exchange: its code, the underlying cause (`reason`) and each endpoint tried. */
export interface UpstreamFailure {
  readonly code: string;
  readonly message: string;
  readonly at: number;
  readonly reason: string | undefined;
  readonly tried: readonly EndpointFailure[];
}

/** One endpoint's failure within an exchange. */
export interface EndpointFailure {
  readonly endpoint: string;
  readonly code: string;
  readonly reason: string | undefined;
}

export type UpstreamState = 'unknown' | 'ok' | 'failing' | 'refused' | 'clock-untrusted';

export interface AgentStatus {
  readonly spiffeId: string | undefined;
  readonly serving: boolean;
  readonly svid: { notBefore: number; notAfter: number } | undefined;
  readonly deviceCa: { notBefore: number; notAfter: number } | undefined;
  readonly lastRotation: { at: number; via: ExchangeMode } | undefined;
  readonly nextRotation: number | undefined;
  readonly upstream: {
    readonly state: UpstreamState;
    readonly endpoint: string;
    readonly consecutiveFailures: number;
    readonly lastError: UpstreamFailure | undefined;
  };
  readonly breaker: { state: string; openUntil: number | undefined };
  readonly clock: { trusted: boolean; floor: number; now: number };
  readonly devices: number;
  readonly revocations: { sequence: number; entries: number };
  readonly bundleSequence: number | undefined;
  readonly cacheAgeMs: number | undefined;
  readonly store: { protector: string; dropped: number };
}

export class Agent {
  readonly svidSource: AgentSvidSource;
  readonly bundleSource: AgentBundleSource;
  readonly deviceSigner: AgentDeviceSigner;
  revocations: RevocationSet;
  readonly counters = new Counters();

  readonly #o: AgentOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #backoff: BackoffStrategy;
  readonly #breaker: CircuitBreaker;
  readonly #failover: Failover;
  #floor = new TimeFloor(0, 0);
  #lastMono = 0;
  #floorPersisted = 0;
  #state: 'new' | 'started' | 'closed' = 'new';
  #timers = new Map<string, Timer>();
  #rotating: Promise<void> | undefined;
  #nextRotationAt: number | undefined;
  #attempt = 0;
  #forceAttest = false;
  #upstreamState: UpstreamState = 'unknown';
  #lastError: UpstreamFailure | undefined;
  #lastTick = 0;
  #clockTrusted = true;
  #devices = new Map<string, number>();
  #expiredReported = { svid: false, ca: false };
  /** When the delegated CA is due (its own half-life ±10 %), drawn once per CA certificate. */
  #caRefreshAt: number | undefined;
  #caSerial: string | undefined;

  constructor(o: AgentOptions) {
    this.#o = o;
    this.#clock = o.clock;
    this.#log = o.logger;
    this.#backoff = o.backoff ?? fullJitterBackoff(DEFAULT_BACKOFF, o.random);
    this.#breaker = new CircuitBreaker(o.breaker ?? DEFAULT_BREAKER, o.clock);
    this.#failover = new Failover(o.upstream);
    this.svidSource = new AgentSvidSource(() => this.now(), o.logger);
    this.bundleSource = new AgentBundleSource(o.logger);
    this.revocations = new RevocationSet(o.logger);
    this.deviceSigner = new AgentDeviceSigner(
      {
        trustDomain: o.trustDomain,
        random: o.random,
        caIdentity: () => this.#caIdentity(),
        clockTrusted: () => this.#floor.trusted(this.#clock.now()),
        now: () => this.now(),
        recordDevice: (rec) => this.#recordDevice(rec),
      },
      o.deviceTtlMs,
    );
  }

  /** The time expiry is judged by: the wall clock, never below the persisted floor. */
  now(): number {
    return this.#floor.effectiveNow(this.#clock.now());
  }

  /** Load and serve the cache, then schedule the first exchange. Resolves without waiting for it. */
  async start(): Promise<void> {
    if (this.#state === 'closed') throw new AgentError('ERR_AGENT_CLOSED', 'agent started after stop');
    if (this.#state !== 'new') throw new TypeError('agent already started');
    this.#state = 'started';
    const { store } = this.#o;
    const floorRec = await store.get<FloorRecord>(NAMES.floor);
    const mono = this.#clock.monotonic();
    this.#floor = new TimeFloor(
      floorRec?.ms ?? 0,
      mono,
      this.#o.floorToleranceMs ?? DEFAULT_FLOOR_TOLERANCE_MS,
    );
    this.#floorPersisted = this.#floor.value;
    const wall = this.#clock.now();
    this.#lastTick = wall;
    this.#lastMono = mono;
    this.#clockTrusted = this.#floor.trusted(wall);
    if (!this.#clockTrusted) this.#reportUntrusted(wall);

    const rev = await store.get<RevocationRecord>(NAMES.revocations);
    this.revocations = new RevocationSet(this.#log, rev);
    this.revocations.prune(this.now());
    const bundle = await store.get<BundleRecord>(NAMES.bundle);
    if (bundle !== undefined) this.#setBundle(bundle.json, false);
    await this.#loadIdentity();
    await this.#loadDevices();

    const live = this.svidSource.current();
    if (live !== undefined)
      this.#event('info', 'serving cached identity', 'identity.cached', {
        spiffeId: live.svid.spiffeId,
        notAfter: iso(live.svid.notAfter),
        caNotAfter: iso(live.ca.notAfter),
      });
    this.#armExpiry();
    this.#schedule(live === undefined ? 0 : (this.#nextRotationAt ?? this.now()) - this.now());
    this.#armTick();
    this.#armFeed(0);
  }

  /** Cancel every timer; wait for a rotation in flight. Idempotent. */
  async stop(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    for (const t of this.#timers.values()) t.cancel();
    this.#timers.clear();
    this.svidSource.clearListeners();
    this.bundleSource.clearListeners();
    this.revocations.clearListeners();
    await this.#rotating?.catch(() => {});
  }

  /** Run a rotation check now (forward clock jump, operator request). */
  async rotateNow(): Promise<void> {
    this.#checkOpen();
    await this.#rotate();
  }

  status(): AgentStatus {
    const loaded = this.svidSource.loaded();
    const live = this.svidSource.current();
    const ca = this.#caIdentity();
    const now = this.now();
    return {
      spiffeId: loaded?.svid.spiffeId,
      serving: live !== undefined,
      svid: live === undefined ? undefined : { notBefore: live.svidNotBefore, notAfter: live.svid.notAfter },
      deviceCa: ca === undefined ? undefined : { notBefore: ca.ca.notBefore, notAfter: ca.ca.notAfter },
      lastRotation:
        loaded === undefined ? undefined : { at: loaded.record.obtainedAt, via: loaded.record.via },
      nextRotation: this.#nextRotationAt,
      upstream: {
        state: this.#upstreamState,
        endpoint: this.#failover.current,
        consecutiveFailures: this.#breaker.consecutiveFailures,
        lastError: this.#lastError,
      },
      breaker: {
        state: this.#breaker.state,
        openUntil: this.#breaker.state === 'closed' ? undefined : this.#breaker.openUntil,
      },
      clock: {
        trusted: this.#floor.trusted(this.#clock.now()),
        floor: this.#floor.value,
        now: this.#clock.now(),
      },
      devices: [...this.#devices.values()].filter((na) => na > now).length,
      revocations: { sequence: this.revocations.sequence, entries: this.revocations.size },
      bundleSequence: this.bundleSource.sequence,
      cacheAgeMs: loaded === undefined ? undefined : Math.max(0, now - loaded.record.obtainedAt),
      store: { protector: this.#o.store.protectorKind, dropped: this.#o.store.dropped },
    };
  }

  // ---- loading -------------------------------------------------------------------------------

  async #loadIdentity(): Promise<void> {
    const rec = await this.#o.store.get<GatewayRecord>(NAMES.gateway);
    if (rec === undefined) return;
    let live: LiveIdentity;
    try {
      live = liveIdentity(rec);
    } catch (err) {
      this.#event('error', 'stored identity is malformed; dropped', 'identity.dropped', {
        code: codeOf(err),
      });
      await this.#o.store.batch([{ type: 'del', name: NAMES.gateway }]);
      return;
    }
    const now = this.now();
    if (live.svid.notAfter <= now && live.ca.notAfter <= now) {
      // Nothing expired is ever loaded (ARCHITECTURE.md §4).
      this.#event('warn', 'cached identity has expired; not loaded', 'identity.expired', {
        spiffeId: live.svid.spiffeId,
        notAfter: iso(live.svid.notAfter),
      });
      await this.#o.store.batch([{ type: 'del', name: NAMES.gateway }]);
      return;
    }
    this.#adopt(live);
  }

  async #loadDevices(): Promise<void> {
    const now = this.now();
    const stale: StoreOp[] = [];
    for await (const [name, rec] of this.#o.store.entries<DeviceRecord>(NAMES.devicePrefix)) {
      if (rec.notAfter <= now) stale.push({ type: 'del', name });
      else this.#devices.set(rec.deviceId, rec.notAfter);
    }
    await this.#o.store.batch(stale);
  }

  /** Make `live` the current identity and compute when to rotate it. */
  #adopt(live: LiveIdentity): void {
    this.svidSource.set(live);
    this.#expiredReported = { svid: false, ca: false };
    const r = this.#o.random;
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
      this.#caIdentity() === undefined || this.#caRefreshAt === undefined || this.now() >= this.#caRefreshAt
    );
  }

  #setBundle(json: string, persist: boolean): DecodedBundle | undefined {
    try {
      const b = decodeBundle(json);
      this.bundleSource.set(this.#o.trustDomain, b);
      if (persist) this.bundleSource.notify();
      return b;
    } catch (err) {
      this.#event('error', 'bundle does not decode; ignored', 'bundle.invalid', { code: codeOf(err) });
      return undefined;
    }
  }

  #caIdentity(): LiveIdentity | undefined {
    const live = this.svidSource.loaded();
    return live !== undefined && this.now() < live.ca.notAfter ? live : undefined;
  }

  // ---- rotation ------------------------------------------------------------------------------

  #schedule(delayMs: number): void {
    if (this.#state !== 'started') return;
    const delay = Math.max(0, Math.round(delayMs));
    this.#nextRotationAt = this.now() + delay;
    this.#setTimer('rotate', delay, () => void this.#rotate());
  }

  #rotate(): Promise<void> {
    if (this.#rotating === undefined)
      this.#rotating = this.#rotateOnce().finally(() => {
        this.#rotating = undefined;
      });
    return this.#rotating;
  }

  async #rotateOnce(): Promise<void> {
    if (this.#state !== 'started') return;
    const wall = this.#clock.now();
    if (!this.#floor.trusted(wall)) {
      this.#upstreamState = 'clock-untrusted';
      this.#schedule(this.#o.tickMs ?? 30_000);
      return;
    }
    if (!this.#breaker.allow()) {
      this.#schedule(this.#breaker.remainingMs());
      return;
    }
    const current = this.svidSource.current();
    const mode: ExchangeMode = this.#forceAttest || current === undefined ? 'attest' : 'renew';
    const renewCa = mode === 'attest' || this.#caDue();
    const tried: EndpointFailure[] = [];
    try {
      const got = await this.#failover.run(
        (ep) =>
          exchange(
            mode,
            ep,
            {
              attestor: this.#o.attestor,
              trustDomain: this.#o.trustDomain,
              newKey: this.#o.newKey,
              now: () => this.now(),
              onStep: this.#o.onStep,
              serverNames: this.#o.serverNames,
              renewCa,
            },
            current,
          ),
        (url, err) => {
          const failure = { endpoint: url, code: codeOf(err), reason: upstreamReason(err) };
          tried.push(failure);
          this.#event('warn', 'upstream endpoint failed', 'upstream.failover', { ...failure });
        },
      );
      if (this.#state !== 'started') return;
      // The issuer vouched for its time in what it signed: the best evidence of the true time.
      this.#floor.witness(got.live.svidNotBefore, this.#clock.monotonic());
      const ops: StoreOp[] = [
        { type: 'put', name: NAMES.gateway, value: got.record },
        {
          type: 'put',
          name: NAMES.bundle,
          value: { trustDomain: this.#o.trustDomain, json: got.bundle.json, sequence: got.bundle.sequence },
        },
        { type: 'put', name: NAMES.floor, value: { ms: this.#floor.value } },
      ];
      await this.#o.store.batch(ops);
      this.#floorPersisted = this.#floor.value;
      await this.#o.onStep?.('stored');
      const bundleChanged = got.bundle.sequence !== this.bundleSource.sequence;
      this.bundleSource.set(this.#o.trustDomain, got.bundle);
      this.#adopt(got.live);
      this.#breaker.success();
      this.#attempt = 0;
      this.#forceAttest = false;
      this.#upstreamState = 'ok';
      this.counters.inc('edgeward_rotations_total', { via: mode });
      this.#event(
        'info',
        mode === 'attest' ? 'identity obtained by attestation' : 'identity renewed',
        'identity.rotated',
        {
          via: mode,
          spiffeId: got.live.svid.spiffeId,
          notAfter: iso(got.live.svid.notAfter),
          caNotAfter: iso(got.live.ca.notAfter),
          caRenewed: renewCa,
          endpoint: this.#failover.current,
        },
      );
      this.#armExpiry();
      this.svidSource.notify();
      if (bundleChanged) this.bundleSource.notify();
      this.#schedule((this.#nextRotationAt ?? this.now()) - this.now());
    } catch (err) {
      if (this.#state !== 'started') return;
      this.#onFailure(mode, err, tried);
    }
  }

  #onFailure(mode: ExchangeMode, err: unknown, tried: EndpointFailure[]): void {
    const code = codeOf(err);
    const now = this.#clock.now();
    const reason = upstreamReason(err);
    // A final failure (refused, rejected) never went through failover: name its endpoint too.
    if (tried.length === 0 && isEdgewardError(err) && err instanceof AgentError) {
      const endpoint = err.fields.endpoint;
      if (typeof endpoint === 'string') tried.push({ endpoint, code, reason });
    }
    this.#lastError = {
      code,
      message: err instanceof Error ? err.message : String(err),
      at: now,
      reason,
      tried,
    };
    this.counters.inc('edgeward_rotation_failures_total', { reason: code });
    const fields = isEdgewardError(err) && err instanceof AgentError ? err.fields : {};
    if (code === 'ERR_UPSTREAM_REFUSED') {
      // Refused for cause (revoked, PCR drift): another identical request would be refused too.
      const reattest = mode === 'renew' && (this.#o.onRefusal ?? 'reattest') === 'reattest';
      this.#event('error', `${mode} refused by the issuer`, 'identity.refused', {
        via: mode,
        remoteCode: fields.remoteCode,
        reason,
        endpoint: fields.endpoint,
        next: reattest ? 'reattest' : 'halt',
      });
      this.#upstreamState = 'refused';
      if (reattest) {
        this.#forceAttest = true;
        this.#schedule(0);
      } else this.#schedule(this.#o.refusalRetryMs ?? 60 * 60_000);
      return;
    }
    this.#breaker.failure();
    const retryAfter = typeof fields.retryAfterMs === 'number' ? fields.retryAfterMs : 0;
    let delay = Math.max(this.#backoff.delay(this.#attempt), retryAfter);
    this.#attempt++;
    if (this.#breaker.state === 'open') delay = Math.max(delay, this.#breaker.openUntil - now);
    this.#upstreamState = 'failing';
    this.#event('warn', `${mode} failed; will retry`, 'identity.retry', {
      via: mode,
      code,
      reason,
      tried,
      attempt: this.#attempt,
      retryInMs: delay,
      breaker: this.#breaker.state,
    });
    if (
      this.svidSource.current() === undefined &&
      this.#caIdentity() === undefined &&
      this.svidSource.loaded()
    )
      this.#event('error', 'every cached credential has expired; still trying upstream', 'identity.none', {});
    this.#schedule(delay);
  }

  // ---- expiry, clock, feed -------------------------------------------------------------------

  #armExpiry(): void {
    const live = this.svidSource.loaded();
    this.#timers.get('expiry')?.cancel();
    if (live === undefined || this.#state !== 'started') return;
    const now = this.now();
    const svidLeft = live.svid.notAfter - now;
    const caLeft = live.ca.notAfter - now;
    if (svidLeft <= 0 && !this.#expiredReported.svid) {
      this.#expiredReported.svid = true;
      this.#event(
        'error',
        'gateway SVID expired; not serving it, still trying upstream',
        'identity.svid-expired',
        {
          spiffeId: live.svid.spiffeId,
          notAfter: iso(live.svid.notAfter),
        },
      );
      this.svidSource.notify();
    }
    if (caLeft <= 0 && !this.#expiredReported.ca) {
      this.#expiredReported.ca = true;
      this.#event('error', 'delegated device CA expired; no device can be signed', 'identity.ca-expired', {
        notAfter: iso(live.ca.notAfter),
      });
    }
    const next = [svidLeft, caLeft].filter((d) => d > 0);
    if (next.length > 0) this.#setTimer('expiry', Math.min(...next), () => this.#armExpiry());
    else
      this.#event('error', 'every cached credential has expired; still trying upstream', 'identity.none', {});
  }

  #armTick(): void {
    const tickMs = this.#o.tickMs ?? 30_000;
    this.#setTimer('tick', tickMs, () => {
      void this.#tick(tickMs).finally(() => this.#armTick());
    });
  }

  async #tick(tickMs: number): Promise<void> {
    const wall = this.#clock.now();
    const mono = this.#clock.monotonic();
    // A jump is the wall clock moving differently from the monotonic clock.
    const jump = wall - this.#lastTick - (mono - this.#lastMono);
    this.#lastTick = wall;
    this.#lastMono = mono;
    const trusted = this.#floor.trusted(wall);
    if (!trusted) {
      if (this.#clockTrusted) this.#reportUntrusted(wall);
      this.#clockTrusted = false;
      this.#upstreamState = 'clock-untrusted';
      return;
    }
    if (!this.#clockTrusted) {
      this.#clockTrusted = true;
      this.#event('info', 'clock is sane again (at or above the time floor)', 'clock.trusted', {
        now: iso(wall),
      });
      this.#armExpiry();
      void this.#rotate();
    }
    if (
      this.#floor.observe(wall, mono) &&
      this.#floor.value - this.#floorPersisted >= (this.#o.floorPersistMs ?? 300_000)
    )
      await this.#persistFloor();
    if (jump > tickMs) {
      this.#event('warn', 'clock jumped forward; checking rotation now', 'clock.jump', {
        jumpMs: jump,
      });
      this.counters.inc('edgeward_clock_jumps_total');
      this.#armExpiry();
      void this.#rotate();
    }
  }

  #reportUntrusted(wall: number): void {
    this.counters.inc('edgeward_clock_untrusted_total');
    this.#event(
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
    if (this.#state !== 'started') return;
    await this.#o.store.batch([{ type: 'put', name: NAMES.floor, value: { ms: this.#floor.value } }]);
    this.#floorPersisted = this.#floor.value;
  }

  #armFeed(delayMs: number): void {
    this.#setTimer('feed', delayMs, () => {
      void this.#pollFeed().finally(() => this.#armFeed(this.#o.feedIntervalMs ?? 60_000));
    });
  }

  async #pollFeed(): Promise<void> {
    const live = this.svidSource.current();
    if (live === undefined || !this.#floor.trusted(this.#clock.now()) || !this.#breaker.allow()) return;
    try {
      const auth = { clientSvid: live.svid };
      const feed = await this.#failover.run((ep) =>
        ep.get<RevocationFeed>(`${PATHS.revocations}?since=${this.revocations.sequence}`, auth),
      );
      if (this.#state !== 'started') return;
      const before = this.revocations.sequence;
      const fresh = this.revocations.apply(feed, this.now());
      this.revocations.prune(this.now());
      // Written only when it changed: an unchanged feed every minute would wear the flash out.
      if (fresh.spiffeIds.length + fresh.serials.length > 0 || this.revocations.sequence !== before) {
        await this.#o.store.batch([
          { type: 'put', name: NAMES.revocations, value: this.revocations.toRecord() },
        ]);
      }
      if (fresh.spiffeIds.length + fresh.serials.length > 0)
        this.#event('info', 'revocations received', 'revocation.applied', {
          spiffeIds: fresh.spiffeIds,
          serials: fresh.serials,
          sequence: this.revocations.sequence,
        });
      // The issuer answers the SPIFFE bundle itself (JSON text).
      const json = await this.#failover.run((ep) => ep.get<unknown>(PATHS.bundle, auth));
      if (typeof json === 'string' && this.#state === 'started') {
        const seq = (JSON.parse(json) as { spiffe_sequence?: number }).spiffe_sequence;
        if (seq !== this.bundleSource.sequence && this.#setBundle(json, true) !== undefined)
          await this.#o.store.batch([
            {
              type: 'put',
              name: NAMES.bundle,
              value: { trustDomain: this.#o.trustDomain, json, sequence: seq ?? 0 },
            },
          ]);
      }
    } catch (err) {
      this.counters.inc('edgeward_feed_failures_total', { reason: codeOf(err) });
      this.#log.debug('feed poll failed', { event: 'feed.failed', code: codeOf(err) });
    }
  }

  async #recordDevice(rec: DeviceRecord): Promise<void> {
    this.#checkOpen();
    await this.#o.store.batch([{ type: 'put', name: deviceName(rec.deviceId), value: rec }]);
    this.#devices.set(rec.deviceId, rec.notAfter);
    this.counters.inc('edgeward_device_svids_total');
    this.#event('info', 'device SVID issued', 'device.issued', {
      spiffeId: rec.spiffeId,
      serial: rec.serial,
      notAfter: iso(rec.notAfter),
    });
  }

  // ---- helpers -------------------------------------------------------------------------------

  #setTimer(name: string, delayMs: number, fn: () => void): void {
    this.#timers.get(name)?.cancel();
    if (this.#state !== 'started') return;
    this.#timers.set(name, this.#clock.setTimer(name, delayMs, fn));
  }

  #checkOpen(): void {
    if (this.#state === 'closed') throw new AgentError('ERR_AGENT_CLOSED', 'agent used after stop');
  }

  /** One structured log line per identity event; never key material. */
  #event(
    level: 'info' | 'warn' | 'error',
    msg: string,
    event: string,
    fields: Record<string, unknown>,
  ): void {
    this.#log[level](msg, { event, ...fields });
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();
const codeOf = (err: unknown): string =>
  typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : 'ERR_UNKNOWN';
