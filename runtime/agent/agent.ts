/**
 * The gateway agent: serves the cached identity at once, then attests, renews or recovers,
 * rotates the SVID at half-life with jitter and the delegated CA at its own half-life with jitter
 * (a renewal sends a CA CSR only when the CA is due), keeps signing devices with the delegated CA
 * through an outage until the CA's NotAfter (the offline budget) also after its SVID expired,
 * recovers by itself when the upstream returns (PoP of the CA key), follows the revocation feed,
 * uploads the log of device issuances, and watches the clock (ARCHITECTURE.md §4).
 *
 * Lifecycle (STYLE.md rule 6): the constructor only stores dependencies; `start()` loads the
 * store and serves what is valid, then schedules the first exchange and resolves — it never waits
 * for the upstream; `stop()` is idempotent and cancels every timer; later calls fail with
 * `ERR_AGENT_CLOSED`.
 *
 * Consumers use `agent.svidSource`, `agent.bundleSource`, `agent.revocations` and
 * `agent.deviceSigner`; the transport never imports this file.
 *
 * This file wires the parts and owns the lifecycle and the loading of the cache: rotation
 * scheduling and failure handling in `rotation.ts` (the exchanges in `exchange.ts`, refusal
 * classes in `refusal.ts`, the first-success probe in `probe.ts`), the time floor (its one owner)
 * and the clock tick in `clock-watch.ts`, credential expiry in `expiry.ts`, the revocation and
 * bundle feeds in `feed.ts`, the device issuance log in `issued-log.ts`, the status snapshot in
 * `status.ts`, the options in `options.ts`.
 *
 * @example
 * ```ts
 * const agent = new Agent({ trustDomain, store, attestor, upstream, clock, random, logger, newKey });
 * await agent.start();
 * agent.svidSource.onChange(() => server.setSecureContext(contextFor(agent.svidSource.getX509Svid())));
 * ```
 */
import type { Clock } from '../core/clock.ts';
import { AgentError, RuntimeError } from '../errors.ts';
import {
  type BundleRecord,
  type DeviceRecord,
  deviceName,
  type GatewayRecord,
  NAMES,
  type RevocationRecord,
} from '../store/records.ts';
import type { StoreOp } from '../store/sealed-store.ts';
import { Failover } from '../upstream/failover.ts';
import { type JwtSvidRequest, type JwtSvidResponse, PATHS } from '../upstream/protocol.ts';
import { CircuitBreaker, DEFAULT_BREAKER } from './breaker.ts';
import { type CaKeys, caKeysFor, loadCaKey } from './ca-keys.ts';
import { ClockWatch } from './clock-watch.ts';
import { AgentDeviceSigner } from './device-signer.ts';
import { codeOf, type EventLog, eventLog, iso } from './events.ts';
import { ExpiryWatch } from './expiry.ts';
import { FeedFollower } from './feed.ts';
import { type LiveIdentity, liveIdentity } from './identity.ts';
import { IssuedLog, issuedLogOp } from './issued-log.ts';
import { Counters } from './metrics.ts';
import type { AgentOptions } from './options.ts';
import { DEFAULT_BACKOFF, fullJitterBackoff } from './policy.ts';
import { RevocationSet } from './revocations.ts';
import { Rotation } from './rotation.ts';
import { AgentBundleSource, AgentSvidSource } from './sources.ts';
import { type AgentStatus, statusSnapshot } from './status.ts';
import { NamedTimers } from './timers.ts';

export type { AgentOptions } from './options.ts';
export type { AgentStatus, EndpointFailure, UpstreamFailure, UpstreamState } from './status.ts';

/** The loading rule: an identity is kept while its SVID or its delegated CA is valid at `now`. */
export function keepable(live: LiveIdentity, now: number): boolean {
  return now < live.svid.notAfter || now < live.ca.notAfter;
}

export class Agent {
  readonly svidSource: AgentSvidSource;
  readonly bundleSource: AgentBundleSource;
  readonly deviceSigner: AgentDeviceSigner;
  revocations: RevocationSet;
  readonly counters = new Counters();

  readonly #o: AgentOptions;
  readonly #clock: Clock;
  readonly #event: EventLog;
  readonly #breaker: CircuitBreaker;
  readonly #failover: Failover;
  readonly #timers: NamedTimers;
  readonly #clockWatch: ClockWatch;
  readonly #expiry: ExpiryWatch;
  readonly #feed: FeedFollower;
  readonly #rotation: Rotation;
  readonly #caKeys: CaKeys;
  readonly #issuedLog: IssuedLog;
  #state: 'new' | 'started' | 'closed' = 'new';
  #devices = new Map<string, number>();

  constructor(o: AgentOptions) {
    this.#o = o;
    this.#caKeys = o.caKeys ?? caKeysFor(o.attestor, o.newKey);
    this.#clock = o.clock;
    this.#event = eventLog(o.logger);
    const backoff = o.backoff ?? fullJitterBackoff(DEFAULT_BACKOFF, o.random);
    this.#breaker = new CircuitBreaker(o.breaker ?? DEFAULT_BREAKER, o.clock);
    this.#failover = new Failover(o.upstream);
    this.svidSource = new AgentSvidSource(() => this.now(), o.logger);
    this.bundleSource = new AgentBundleSource(o.logger);
    this.revocations = new RevocationSet(o.logger);
    const running = (): boolean => this.#state === 'started';
    const now = (): number => this.now();
    const common = { counters: this.counters, event: this.#event, running };
    this.#timers = new NamedTimers(o.clock, running);
    this.#issuedLog = new IssuedLog(o.store, this.#event);
    const timers = this.#timers;
    this.#clockWatch = new ClockWatch({
      ...common,
      clock: o.clock,
      store: o.store,
      timers,
      tickMs: o.tickMs,
      floorToleranceMs: o.floorToleranceMs,
      floorPersistMs: o.floorPersistMs,
      recheck: () => {
        this.#expiry.arm();
        void this.#rotation.rotate();
      },
    });
    this.#expiry = new ExpiryWatch({ svidSource: this.svidSource, timers, event: this.#event, now, running });
    this.#feed = new FeedFollower({
      ...common,
      trustDomain: o.trustDomain,
      store: o.store,
      svidSource: this.svidSource,
      bundleSource: this.bundleSource,
      revocations: () => this.revocations,
      issuedLog: this.#issuedLog,
      failover: this.#failover,
      breaker: this.#breaker,
      timers,
      log: o.logger,
      now,
      clockTrusted: () => this.#clockWatch.trusted(),
      feedIntervalMs: o.feedIntervalMs,
    });
    this.#rotation = new Rotation({
      ...common,
      options: o,
      caKeys: this.#caKeys,
      clock: o.clock,
      clockWatch: this.#clockWatch,
      backoff,
      breaker: this.#breaker,
      failover: this.#failover,
      svidSource: this.svidSource,
      bundleSource: this.bundleSource,
      expiry: this.#expiry,
      timers,
      now,
      caIdentity: () => this.#caIdentity(),
      onReconnect: () => this.#feed.arm(0),
    });
    this.deviceSigner = new AgentDeviceSigner(
      {
        trustDomain: o.trustDomain,
        random: o.random,
        caIdentity: () => this.#caIdentity(),
        clockTrusted: () => this.#clockWatch.trusted(),
        now,
        recordDevice: (rec) => this.#recordDevice(rec),
      },
      o.deviceTtlMs,
    );
  }

  /** The time expiry is judged by: the wall clock, never below the persisted floor. */
  now(): number {
    return this.#clockWatch.now();
  }

  /** Load and serve the cache, then schedule the first exchange. Resolves without waiting for it. */
  async start(): Promise<void> {
    if (this.#state === 'closed') throw new AgentError('ERR_AGENT_CLOSED', 'agent started after stop');
    if (this.#state !== 'new') throw new TypeError('agent already started');
    this.#state = 'started';
    const { store } = this.#o;
    await this.#clockWatch.load();

    const rev = await store.get<RevocationRecord>(NAMES.revocations);
    this.revocations = new RevocationSet(this.#o.logger, rev);
    this.revocations.prune(this.now());
    const bundle = await store.get<BundleRecord>(NAMES.bundle);
    if (bundle !== undefined) this.#feed.loadBundle(bundle.json);
    await this.#loadIdentity();
    await this.#loadDevices();

    const live = this.svidSource.current();
    const kept = this.svidSource.loaded();
    if (live !== undefined)
      this.#event('info', 'serving cached identity', 'identity.cached', {
        spiffeId: live.svid.spiffeId,
        notAfter: iso(live.svid.notAfter),
        caNotAfter: iso(live.ca.notAfter),
      });
    else if (kept !== undefined)
      this.#event(
        'warn',
        'cached gateway SVID has expired; delegated CA kept for local signing until its NotAfter',
        'identity.ca-only',
        {
          spiffeId: kept.svid.spiffeId,
          notAfter: iso(kept.svid.notAfter),
          caNotAfter: iso(kept.ca.notAfter),
        },
      );
    this.#expiry.arm();
    this.#rotation.schedule(
      live === undefined ? 0 : (this.#rotation.nextRotationAt ?? this.now()) - this.now(),
    );
    this.#clockWatch.arm();
    this.#feed.arm(0);
  }

  /** Cancel every timer; wait for a rotation in flight. Idempotent. */
  async stop(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#timers.cancelAll();
    this.svidSource.clearListeners();
    this.bundleSource.clearListeners();
    this.revocations.clearListeners();
    await this.#rotation.inFlight?.catch(() => {});
    await this.#rotation.dropPendingFinish();
  }

  /** Run a rotation now (operator request): also after a definitive refusal stopped the agent. */
  async rotateNow(): Promise<void> {
    this.#checkOpen();
    await this.#rotation.rotate({ operator: true });
  }

  status(): AgentStatus {
    return statusSnapshot({
      loaded: this.svidSource.loaded(),
      live: this.svidSource.current(),
      ca: this.#caIdentity(),
      now: this.now(),
      nextRotation: this.#rotation.nextRotationAt,
      upstream: {
        state: this.#rotation.upstreamState,
        endpoint: this.#failover.current,
        consecutiveFailures: this.#breaker.consecutiveFailures,
        lastError: this.#rotation.lastError,
      },
      breaker: this.#breaker,
      clock: { trusted: this.#clockWatch.trusted(), floor: this.#clockWatch.floor, now: this.#clock.now() },
      deviceNotAfters: this.#devices.values(),
      revocations: { sequence: this.revocations.sequence, entries: this.revocations.size },
      bundleSequence: this.bundleSource.sequence,
      store: { protector: this.#o.store.protectorKind, dropped: this.#o.store.dropped },
    });
  }

  // ---- loading -------------------------------------------------------------------------------

  async #loadIdentity(): Promise<void> {
    const rec = await this.#o.store.get<GatewayRecord>(NAMES.gateway);
    if (rec === undefined) return;
    let live: LiveIdentity;
    try {
      live = liveIdentity(rec, this.#caKeys.open);
      await loadCaKey(live.ca.key);
    } catch (err) {
      this.#event('error', 'stored identity is malformed; dropped', 'identity.dropped', {
        code: codeOf(err),
      });
      await this.#o.store.batch([{ type: 'del', name: NAMES.gateway }]);
      return;
    }
    const now = this.now();
    // An identity is kept while its delegated CA is valid (the CA's NotAfter is the offline
    // budget), even when its upstream SVID has expired: the SVID source then reports it
    // unavailable (an expired SVID is never served), the CA goes on signing devices locally, and
    // the agent renews upstream by proof of possession of the CA key. An SVID still valid under
    // an expired CA is kept too (it can renew). Only an identity with nothing valid is dropped.
    if (!keepable(live, now)) {
      this.#event('warn', 'cached identity has expired; not loaded', 'identity.expired', {
        spiffeId: live.svid.spiffeId,
        notAfter: iso(live.svid.notAfter),
        caNotAfter: iso(live.ca.notAfter),
      });
      await this.#o.store.batch([{ type: 'del', name: NAMES.gateway }]);
      return;
    }
    this.#rotation.adopt(live);
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

  /** The loaded identity while its delegated CA is still valid (the Workload API signs with it). */
  caIdentity(): LiveIdentity | undefined {
    return this.#caIdentity();
  }

  /**
   * A JWT-SVID from the issuer for `spiffeId` (one of this gateway's workloads) and `audience`,
   * over mTLS with the live gateway SVID (ERR_SVID_UNAVAILABLE without one; the upstream's
   * refusals and failures as for the feed). The Workload API caches the answer.
   */
  async requestJwtSvid(spiffeId: string, audience: readonly string[]): Promise<JwtSvidResponse> {
    this.#checkOpen();
    const live = this.svidSource.current();
    if (live === undefined || !this.#clockWatch.trusted())
      throw new RuntimeError('ERR_SVID_UNAVAILABLE', 'no live gateway SVID to ask the issuer with');
    // While the breaker is open the upstream counts as away: the caller serves its cache at once.
    if (!this.#breaker.allow())
      throw new AgentError('ERR_UPSTREAM_BREAKER_OPEN', 'upstream away (circuit breaker open)');
    const body: JwtSvidRequest = { spiffeId, audience: [...audience] };
    return this.#failover.run((ep) =>
      ep.post<JwtSvidResponse>(PATHS.jwtSvid, body, { clientSvid: live.svid }),
    );
  }

  /** False while the clock is behind the persisted time floor (no signing then). */
  clockTrusted(): boolean {
    return this.#clockWatch.trusted();
  }

  /** The loaded identity while its delegated CA is still valid. */
  #caIdentity(): LiveIdentity | undefined {
    const live = this.svidSource.loaded();
    return live !== undefined && this.now() < live.ca.notAfter ? live : undefined;
  }

  async #recordDevice(rec: DeviceRecord): Promise<void> {
    this.#checkOpen();
    // The device record and its entry in the log uploaded to the issuer's audit: one batch.
    await this.#o.store.batch([
      { type: 'put', name: deviceName(rec.deviceId), value: rec },
      issuedLogOp(rec),
    ]);
    this.#devices.set(rec.deviceId, rec.notAfter);
    this.counters.inc('edgeward_device_svids_total');
    this.#event('info', 'device SVID issued', 'device.issued', {
      spiffeId: rec.spiffeId,
      serial: rec.serial,
      notAfter: iso(rec.notAfter),
    });
  }

  #checkOpen(): void {
    if (this.#state === 'closed') throw new AgentError('ERR_AGENT_CLOSED', 'agent used after stop');
  }
}
