/**
 * The gateway's local MQTT broker: aedes on a Node `tls.Server`, mTLS required, identity = the
 * client certificate's SPIFFE ID verified by `runtime/spiffe` (X.509-SVID rules, chain to the
 * bundle, path scoping, revocation), authorization by a policy file (default deny), plus the
 * enrollment listener, device renewal and the bundle topic.
 *
 * ```ts
 * const broker = await startBroker({
 *   svidSource, bundleSource, revocationSource,   // runtime/sources/types.ts: the agent's, or static ones
 *   deviceSigner, tokenStore,                     // signs device SVIDs; holds hashed join tokens
 *   trustDomain: 'fleet.example',
 *   policy: { file: '/etc/edgeward/policy.yaml' }, // or a Policy object; default DEFAULT_POLICY
 *   clock, logger,
 *   listen: { host: '0.0.0.0', port: 8883 },
 *   enrollment: { host: '0.0.0.0', port: 8884 },   // omit for no enrollment listener
 *   limits: { maxConnections: 2000, maxPacketSize: 262144 },
 *   factory: { roots: [manufacturerRoot], idField: 'cn', allowList: ['sensor-1'] }, // optional
 *   bridge: { upstream: { host, port, ca }, topics: [{ local: 'devices/+/up' }], buffer: { db, maxMessages, maxBytes } }, // optional
 * });
 * broker.addresses;            // { mqtt: { host, port }, enrollment?: { host, port } }
 * await broker.reloadPolicy(); // re-reads the policy file; a bad file throws ERR_POLICY_INVALID, the old one stays
 * await broker.close();
 * ```
 *
 * What happens to a connection: refused before the handshake while the gateway SVID is expired
 * (logged once with ERR_SVID_UNAVAILABLE; served again from the next rotation; live sessions
 * stay); TLS handshake with the current gateway SVID (one SecureContext, swapped by
 * `setSecureContext` when the SVID or bundle changes — no connection dropped); the
 * peer chain is verified (a failure is logged with its code and the socket destroyed); a
 * session is registered and closed at the chain's NotAfter (one shared expiry queue); its
 * writes are coalesced per event-loop turn (`write-batch.ts`); then aedes runs the MQTT protocol
 * with the hooks of `hooks.ts`. Revocation closes matching sessions at once.
 *
 * Costs per connection, measured by `npm run bench broker`: no TLS session tickets (a resumed
 * session would lack the peer chain the SPIFFE check needs), no certificate objects or timers
 * kept per session. Shared subscriptions (`$share/<group>/<filter>`), which aedes 1.2 acknowledges
 * but never delivers, are routed by `shared.ts`: each message to one connected member per group.
 *
 * The parts: `tls-front.ts` (server, material refresh, expired refusal, peer verification),
 * `policy-holder.ts` (load, reload, regrant), `renewal.ts` (its own `publish` handler),
 * `reserved-access.ts` (every rule on `$edgeward/` topics), `hooks.ts` (aedes hooks, refusals
 * typed and counted by `refusals.ts`), and one `Teardown` list for a failed start and `close()`.
 */
import type { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { Aedes } from 'aedes';
import memory from 'aedes-persistence';
import type { Clock } from '../../runtime/core/clock.ts';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { type Logger, nullLogger } from '../../runtime/core/logger.ts';
import type {
  BundleSource,
  DeviceSigner,
  RevocationSource,
  SvidSource,
} from '../../runtime/sources/types.ts';
import type { VerifiedSvid } from '../../runtime/spiffe/verify.ts';
import type { Bridge, BridgeOptions, BridgeStats } from '../bridge/bridge.ts';
import type { EnrollmentServer } from '../enroll/est-server.ts';
import type { FactoryOptions } from '../enroll/factory.ts';
import { limitingIssuance } from '../enroll/issuance-limit.ts';
import type { TokenStore } from '../enroll/token-store.ts';
import { TransportError, type TransportErrorCode } from '../errors.ts';
import type { Policy } from '../policy/schema.ts';
import {
  authenticateBySvid,
  authorizeForwardByPolicy,
  authorizePublishByPolicy,
  authorizeSubscribeByPolicy,
  preConnectRecordingClientId,
} from './hooks.ts';
import { type BrokerLimits, DEFAULT_LIMITS, limitPacketSize } from './limits.ts';
import type { DurablePersistence, PersistenceOptions, PersistenceStats } from './persistence/durable.ts';
import { guardPublish } from './persistence/guard-publish.ts';
import { PolicyHolder } from './policy-holder.ts';
import { Refusals } from './refusals.ts';
import { publishBundle, RenewalService } from './renewal.ts';
import { RetainedGuard, type RetainedStats, type RetainedStore } from './retained.ts';
import { closeRevoked } from './revocation.ts';
import { type Session, Sessions } from './sessions.ts';
import { type SharedStats, SharedSubscriptions } from './shared.ts';
import { Teardown } from './teardown.ts';
import { type Endpoint, TlsFront } from './tls-front.ts';
import { type StoresWills, WillGate, willDropper } from './wills.ts';
import { batchWrites } from './write-batch.ts';

export type { Endpoint } from './tls-front.ts';

export interface BrokerOptions {
  /**
   * The gateway's upstream SVID: the bridge's client certificate, and the certificate the
   * listeners present when `serverSource` is omitted.
   */
  readonly svidSource: SvidSource;
  /**
   * The certificate the main and enrollment listeners present: the gateway's local server
   * identity under its delegated CA (`runtime/agent/server-identity.ts`), served until the CA's
   * end. When it has none valid any more (the offline budget's end) new connections are refused
   * and every live session is closed at once.
   */
  readonly serverSource?: SvidSource;
  readonly bundleSource: BundleSource;
  readonly revocationSource: RevocationSource;
  readonly deviceSigner: DeviceSigner;
  readonly tokenStore: TokenStore;
  readonly trustDomain: string;
  /** A policy, or a file to read it from (and re-read on `reloadPolicy`); default `DEFAULT_POLICY`. */
  readonly policy?: Policy | { readonly file: string };
  readonly clock: Clock;
  readonly logger?: Logger;
  readonly listen?: Endpoint;
  /** The enrollment listener; omitted = none. */
  readonly enrollment?: Endpoint;
  readonly limits?: BrokerLimits;
  readonly factory?: FactoryOptions;
  /** Forward local topics to a cloud broker (see `transport/bridge/bridge.ts`); omitted = none. */
  readonly bridge?: Omit<BridgeOptions, 'broker' | 'svidSource' | 'logger'>;
  /**
   * Keep persistent sessions (clean=false), their queued QoS 1/2 messages, wills and retained
   * messages in a journal on this LevelDB sublevel (`persistence/durable.ts`), replayed at start;
   * omitted = in memory only (lost with the process).
   */
  readonly persistence?: Omit<PersistenceOptions, 'logger'>;
}

export interface Broker {
  readonly addresses: { readonly mqtt: Endpoint; readonly enrollment?: Endpoint };
  /** Number of verified TLS sessions on the main listener. */
  readonly sessionCount: number;
  /** The bridge's counters, when a bridge is configured. */
  bridgeStats(): BridgeStats | undefined;
  /** The session journal's counters, when `persistence` is configured. */
  persistenceStats(): PersistenceStats | undefined;
  /** Shared-subscription groups, members, and messages delivered to or dropped by them. */
  sharedStats(): SharedStats;
  /** Refusals (CONNECT, PUBLISH, SUBSCRIBE, wills, retained caps) since start, by typed code. */
  refusals(): Readonly<Partial<Record<TransportErrorCode, number>>>;
  /** Retained messages held (count, bytes of topic + payload) and dropped at start over the caps. */
  retainedStats(): RetainedStats;
  /** Re-read the policy file (or apply `policy`) and recompute every live session's grants. */
  reloadPolicy(policy?: Policy): Promise<void>;
  close(): Promise<void>;
}

export async function startBroker(options: BrokerOptions): Promise<Broker> {
  const logger = options.logger ?? nullLogger;
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const { clock, svidSource, bundleSource, revocationSource, trustDomain } = options;
  const bundle = () => bundleSource.getBundleFor(trustDomain);
  const teardown = new Teardown(logger);
  const policy = await PolicyHolder.load(options.policy, logger);
  const refusals = new Refusals(logger);
  const sessions = new Sessions(clock, logger);
  const shared = new SharedSubscriptions({
    logger,
    canReceive: (client, topic) => sessions.of(client.conn)?.grants?.canReceiveShared(topic) === true,
  });
  let persistence: DurablePersistence | undefined;
  try {
    // Created first (it does no I/O until `listen`): its certificate's ID is the `{self}` of the policy.
    const front = new TlsFront({
      svidSource: options.serverSource ?? svidSource,
      ...(options.serverSource === undefined
        ? {}
        : {
            onUnavailable() {
              if (sessions.size === 0) return;
              logger.error('local service stopped: every session closed', {
                code: 'ERR_SVID_UNAVAILABLE',
                sessions: sessions.size,
              });
              sessions.closeAll();
            },
          }),
      bundleSource,
      revocationSource,
      trustDomain,
      clock,
      logger,
      limits,
      onSession(socket: TLSSocket, svid: VerifiedSvid) {
        const s = sessions.add(socket, svid, policy.grantsFor(svid.spiffeId, front.self));
        batchWrites(socket);
        const client = broker.handle(socket);
        s.mqtt = client as unknown as Session['mqtt'];
        limitPacketSize(client, limits.maxPacketSize);
      },
    });
    const wills = new WillGate({
      policy,
      self: () => front.self,
      revocation: revocationSource,
      topics: limits,
    });
    if (options.persistence !== undefined) {
      const { DurablePersistence } = await import('./persistence/durable.ts');
      const opened = await DurablePersistence.open({
        ...options.persistence,
        logger,
        admitWill: (will) => wills.check(will),
      });
      persistence = opened;
      teardown.add('journal', () => opened.flushed());
    }
    if (persistence !== undefined) sessions.seedOwners(persistence.owners());
    // Without a journal, aedes' own in-memory persistence, created here so `retained.ts` can wrap it.
    const store = persistence ?? (memory as unknown as () => RetainedStore)();
    const dropWill = willDropper(store as unknown as StoresWills, () => broker.id, logger);
    const retained = new RetainedGuard(limits, logger);
    const authorizePublish = authorizePublishByPolicy(sessions, refusals, {
      gate: wills,
      retained,
      topics: limits,
      drop: (will) => dropWill(will as { clientId?: string; brokerId?: string }),
    });
    const broker = new Aedes({
      persistence: store as never,
      connectTimeout: limits.connectTimeoutMs,
      heartbeatInterval: limits.heartbeatIntervalMs,
      maxTopicLevels: Math.min(limits.maxTopicLevels, 100),
      maxClientsIdLength: 64,
      preConnect: preConnectRecordingClientId(sessions),
      authenticate: authenticateBySvid(
        sessions,
        refusals,
        { min: limits.keepaliveMin, max: limits.keepaliveMax },
        limits,
      ),
      // With a journal, a kept QoS 1/2 message is logged before aedes sends its PUBACK.
      authorizePublish:
        persistence === undefined
          ? authorizePublish
          : (guardPublish(persistence, authorizePublish as never) as unknown as typeof authorizePublish),
      authorizeSubscribe: authorizeSubscribeByPolicy(sessions, refusals, shared),
      authorizeForward: authorizeForwardByPolicy(sessions, shared),
    });
    // No error of aedes or of its persistence (a will it could not publish, a journal write) may
    // end the process: logged with a code, the broker keeps serving.
    (broker as unknown as EventEmitter).on('error', (err: Error) =>
      logger.error('broker error', { code: 'ERR_MQTT_BROKER_ERROR', reason: err.message }),
    );
    shared.attach(broker);
    await retained.attach(broker, store, persistence?.takeRestoredRetained());
    await broker.listen();
    teardown.add('aedes', () => new Promise<void>((r) => broker.close(() => r())));
    teardown.add('shared subscriptions', () => shared.close());
    broker.on('clientError', (client, err) => {
      if (err instanceof TransportError) refusals.count(err);
      logger.info('client error', {
        clientId: client.id,
        reason: err.message,
        ...(isEdgewardError(err) ? { code: err.code } : {}),
      });
    });
    broker.on('connectionError', (_client, err) => {
      if (err instanceof TransportError) refusals.count(err);
      logger.info('connection error', {
        reason: err.message,
        ...(isEdgewardError(err) ? { code: err.code } : {}),
      });
    });

    // A persistent session's client id stays its identity's across a restart (takeover check).
    const journal = persistence;
    if (journal !== undefined)
      broker.on('client', (client) => {
        const s = sessions.of(client.conn);
        if (s === undefined) return;
        journal
          .setOwner(client.id, s.clean ? undefined : s.svid.spiffeId)
          .catch((err: Error) =>
            logger.error('session owner not journaled', { clientId: client.id, reason: err.message }),
          );
      });

    // One per-device issuance budget for both paths to the signer: renewal here, EST below.
    const deviceSigner = limitingIssuance(options.deviceSigner, { perMinute: limits.enrollPerMinute, clock });
    const renewal = new RenewalService(broker, sessions, deviceSigner, bundle, logger);
    renewal.start();
    teardown.add('renewal', () => renewal.stop());

    front.start();
    teardown.add('main listener closed', () => front.closed());
    teardown.add('sessions', () => sessions.closeAll());
    teardown.add('main listener', () => front.stop());
    // The retained bundle is signed with the key of the certificate the listeners serve (devices
    // adopt only a bundle their gateway signed): published again when either changes.
    const served = options.serverSource ?? svidSource;
    const publishSigned = (): void => {
      Promise.resolve()
        .then(() => publishBundle(broker, bundle(), served.getX509Svid()))
        .catch((err: Error) => logger.error('bundle not published', { reason: err.message }));
    };
    teardown.add('bundle topic', bundleSource.onChange(publishSigned));
    teardown.add('bundle signer', served.onChange(publishSigned));
    teardown.add(
      'revocation',
      // A revoked device's session closes at once and its will is dropped, not published.
      revocationSource.onRevoke(closeRevoked(sessions, dropWill, logger)),
    );

    const mqtt = await front.listen(options.listen ?? { host: '127.0.0.1', port: 8883 });
    let bridge: Bridge | undefined;
    if (options.bridge !== undefined) {
      const { startBridge } = await import('../bridge/bridge.ts');
      const started = await startBridge({ ...options.bridge, broker, svidSource, logger });
      bridge = started;
      teardown.add('bridge', () => started.close());
    }
    await publishBundle(broker, bundle(), served.getX509Svid());
    let enrollment: EnrollmentServer | undefined;
    if (options.enrollment !== undefined) {
      const { startEnrollment } = await import('../enroll/est-server.ts');
      const started = await startEnrollment({
        at: options.enrollment,
        material: front.material(),
        servedUntil: () => front.servedUntil,
        onExpiredRefused: front.refusedExpired('enrollment'),
        bundle,
        signer: deviceSigner,
        tokens: options.tokenStore,
        revocation: revocationSource,
        clock,
        logger,
        perMinute: limits.enrollPerMinute,
        handshakeTimeoutMs: limits.handshakeTimeoutMs,
        ...(options.factory === undefined ? {} : { factory: options.factory }),
      });
      enrollment = started;
      front.onMaterial((m) => started.setMaterial(m));
      teardown.add('enrollment', () => started.close());
    }
    logger.info('broker listening', { mqtt, enrollment: enrollment?.address, spiffeId: front.self });

    return {
      addresses: enrollment === undefined ? { mqtt } : { mqtt, enrollment: enrollment.address },
      get sessionCount() {
        return sessions.size;
      },
      bridgeStats: () => bridge?.stats(),
      persistenceStats: () => persistence?.stats(),
      sharedStats: () => shared.stats(),
      refusals: () => refusals.counts(),
      retainedStats: () => retained.stats(),
      async reloadPolicy(next?: Policy) {
        if (teardown.ran) throw new TransportError('ERR_BROKER_CLOSED', 'broker is closed');
        await policy.reload(next);
        policy.regrant(sessions, shared, front.self);
      },
      close: () => teardown.run(),
    };
  } catch (err) {
    await teardown.run();
    throw err;
  }
}
