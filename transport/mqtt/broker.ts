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
 */
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { Aedes } from 'aedes';
import type { Clock } from '../../runtime/core/clock.ts';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { type Logger, nullLogger } from '../../runtime/core/logger.ts';
import { SpiffeError } from '../../runtime/errors.ts';
import type {
  BundleSource,
  DeviceSigner,
  RevocationSource,
  SvidSource,
  Unsubscribe,
} from '../../runtime/sources/types.ts';
import { SvidVerifier } from '../../runtime/spiffe/verify.ts';
import type { Bridge, BridgeOptions, BridgeStats } from '../bridge/bridge.ts';
import type { EnrollmentServer } from '../enroll/est-server.ts';
import type { FactoryOptions } from '../enroll/factory.ts';
import type { TokenStore } from '../enroll/token-store.ts';
import { TransportError } from '../errors.ts';
import { guardTlsServer } from '../net/guard.ts';
import { DEFAULT_POLICY } from '../policy/default.ts';
import { grantsFor } from '../policy/grants.ts';
import type { Policy } from '../policy/schema.ts';
import {
  authenticateBySvid,
  authorizeForwardByPolicy,
  authorizePublishByPolicy,
  authorizeSubscribeByPolicy,
  preConnectRecordingClientId,
} from './hooks.ts';
import { type BrokerLimits, DEFAULT_LIMITS, limitPacketSize } from './limits.ts';
import { peerChain } from './peer-chain.ts';
import type { DurablePersistence, PersistenceOptions, PersistenceStats } from './persistence/durable.ts';
import { guardPublish } from './persistence/guard-publish.ts';
import { publishBundle, RenewalService } from './renewal.ts';
import { Sessions } from './sessions.ts';
import { type SharedStats, SharedSubscriptions } from './shared.ts';
import { materialFor, refuseWhileExpired, SERVER_TLS_OPTIONS } from './tls-context.ts';
import { batchWrites } from './write-batch.ts';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface BrokerOptions {
  readonly svidSource: SvidSource;
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
  /** Re-read the policy file (or apply `policy`) and recompute every live session's grants. */
  reloadPolicy(policy?: Policy): Promise<void>;
  close(): Promise<void>;
}

function endpointOf(server: Server): Endpoint {
  const a = server.address() as AddressInfo;
  return { host: a.address, port: a.port };
}

function listenOn(server: Server, at: Endpoint): Promise<Endpoint> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void =>
      reject(
        new TransportError('ERR_BROKER_LISTEN', `cannot listen on ${at.host}:${at.port}: ${err.message}`),
      );
    server.once('error', onError);
    server.listen(at.port, at.host, () => {
      server.off('error', onError);
      resolve(endpointOf(server));
    });
  });
}

/** The policy file reader (ajv, yaml) is loaded only when a file is configured. */
async function loadPolicyFile(file: string): Promise<Policy> {
  return (await import('../policy/load.ts')).loadPolicyFile(file);
}

/** The one error listener of every main-listener socket (a shared function, not a closure each). */
function destroySocket(this: TLSSocket): void {
  this.destroy();
}

export async function startBroker(options: BrokerOptions): Promise<Broker> {
  const logger = options.logger ?? nullLogger;
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const { clock, svidSource, bundleSource, revocationSource, trustDomain } = options;
  const policySource = options.policy ?? DEFAULT_POLICY;
  let policy: Policy = 'file' in policySource ? await loadPolicyFile(policySource.file) : policySource;
  const material = () => materialFor(svidSource.getX509Svid(), bundleSource.getBundleFor(trustDomain));
  const first = svidSource.getX509Svid();
  let self = first.spiffeId;
  /** NotAfter of the certificate the listeners present; -Infinity once the source has none valid. */
  let servedUntil = first.notAfter;

  const sessions = new Sessions(clock, logger);
  const verifier = new SvidVerifier();
  const renewal: { service?: RenewalService } = {};
  const shared = new SharedSubscriptions({
    logger,
    canReceive: (client, topic) => sessions.of(client.conn)?.grants?.canReceiveShared(topic) === true,
  });
  let persistence: DurablePersistence | undefined;
  if (options.persistence !== undefined) {
    const { DurablePersistence } = await import('./persistence/durable.ts');
    persistence = await DurablePersistence.open({ ...options.persistence, logger });
  }
  // With a journal, a kept QoS 1/2 message is logged before aedes sends its PUBACK.
  const guarded = <F extends (...a: never[]) => void>(f: F): F =>
    persistence === undefined ? f : (guardPublish(persistence, f as never) as unknown as F);
  const broker = new Aedes({
    ...(persistence === undefined ? {} : { persistence }),
    connectTimeout: limits.connectTimeoutMs,
    maxClientsIdLength: 64,
    preConnect: preConnectRecordingClientId(),
    authenticate: authenticateBySvid(sessions, logger, {
      min: limits.keepaliveMin,
      max: limits.keepaliveMax,
    }),
    authorizePublish: guarded(
      authorizePublishByPolicy(sessions, logger, (deviceId, packet) =>
        renewal.service?.handle(deviceId, packet.payload),
      ),
    ),
    authorizeSubscribe: authorizeSubscribeByPolicy(sessions, logger, shared),
    authorizeForward: authorizeForwardByPolicy(sessions, shared),
  });
  shared.attach(broker);
  await broker.listen();
  renewal.service = new RenewalService(
    broker,
    options.deviceSigner,
    () => bundleSource.getBundleFor(trustDomain),
    logger,
  );
  broker.on('clientError', (client, err) =>
    logger.info('client error', { clientId: client.id, reason: err.message }),
  );
  broker.on('connectionError', (_client, err) => logger.info('connection error', { reason: err.message }));

  const server = createServer({
    ...material(),
    requestCert: true,
    // Chain errors are judged (and logged) by the SPIFFE verifier below, not by a silent handshake abort.
    rejectUnauthorized: false,
    ...SERVER_TLS_OPTIONS,
    handshakeTimeout: limits.handshakeTimeoutMs,
  });
  guardTlsServer(server, {
    handshakeTimeoutMs: limits.handshakeTimeoutMs,
    maxConnections: limits.maxConnections,
    logger,
    name: 'mqtt',
  });
  server.maxConnections = limits.maxConnections;
  // An expired gateway SVID is never presented: connections wait for the next rotation.
  let refusing = false;
  const refusedExpired =
    (listener: string) =>
    (remote: string | undefined): void => {
      if (!refusing)
        logger.error('gateway SVID expired: new connections refused until it rotates', {
          code: 'ERR_SVID_UNAVAILABLE',
          notAfter: servedUntil,
        });
      refusing = true;
      logger.debug('connection refused: gateway SVID expired', { listener, remote });
    };
  refuseWhileExpired(server, clock, () => servedUntil, refusedExpired('mqtt'));
  server.on('tlsClientError', (err) => logger.debug('TLS handshake failed', { reason: err.message }));
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.on('error', destroySocket);
    let svid: ReturnType<SvidVerifier['verifyCerts']>;
    try {
      const chain = peerChain(socket);
      if (chain.length === 0) throw new SpiffeError('ERR_SVID_INVALID', 'no client certificate presented');
      svid = verifier.verifyCerts(chain, {
        now: clock.now(),
        bundle: bundleSource.getBundleFor(trustDomain),
        revocation: revocationSource,
      });
    } catch (err) {
      const code = isEdgewardError(err) ? err.code : 'ERR_SVID_INVALID';
      logger.warn('client certificate refused', {
        code,
        reason: (err as Error).message,
        remote: socket.remoteAddress,
      });
      socket.destroy();
      return;
    }
    sessions.add(socket, svid, grantsFor(policy, svid.spiffeId, self));
    batchWrites(socket);
    const client = broker.handle(socket);
    limitPacketSize(client, limits.maxPacketSize);
  });

  const subscriptions: Unsubscribe[] = [];
  const rotate = (): void => {
    try {
      const svid = svidSource.getX509Svid();
      const m = materialFor(svid, bundleSource.getBundleFor(trustDomain));
      server.setSecureContext({ ...m, ...SERVER_TLS_OPTIONS });
      enrollment?.setMaterial(m);
      self = svid.spiffeId;
      servedUntil = svid.notAfter;
      refusing = false;
      logger.info('broker certificate rotated', { spiffeId: self });
    } catch (err) {
      const code = isEdgewardError(err) ? err.code : undefined;
      // No valid SVID any more (expired): refuse connections rather than present the old one.
      if (code === 'ERR_SVID_UNAVAILABLE') servedUntil = Number.NEGATIVE_INFINITY;
      logger.error('broker certificate not rotated', { code, reason: (err as Error).message });
    }
  };
  subscriptions.push(svidSource.onChange(rotate));
  subscriptions.push(
    bundleSource.onChange(() => {
      rotate();
      publishBundle(broker, bundleSource.getBundleFor(trustDomain)).catch((err: Error) =>
        logger.error('bundle not published', { reason: err.message }),
      );
    }),
  );
  subscriptions.push(
    revocationSource.onRevoke(({ spiffeIds, serials }) => {
      for (const s of sessions.matching(new Set(spiffeIds), new Set(serials))) {
        logger.warn('session closed: revoked', { spiffeId: s.svid.spiffeId, clientId: s.clientId });
        s.socket.destroy();
      }
    }),
  );

  const mqtt = await listenOn(server, options.listen ?? { host: '127.0.0.1', port: 8883 });
  let enrollment: EnrollmentServer | undefined;
  let bridge: Bridge | undefined;
  try {
    if (options.bridge !== undefined) {
      const { startBridge } = await import('../bridge/bridge.ts');
      bridge = await startBridge({ ...options.bridge, broker, svidSource, logger });
    }
    await publishBundle(broker, bundleSource.getBundleFor(trustDomain));
    if (options.enrollment !== undefined) {
      const { startEnrollment } = await import('../enroll/est-server.ts');
      enrollment = await startEnrollment({
        at: options.enrollment,
        material: material(),
        servedUntil: () => servedUntil,
        onExpiredRefused: refusedExpired('enrollment'),
        bundle: () => bundleSource.getBundleFor(trustDomain),
        signer: options.deviceSigner,
        tokens: options.tokenStore,
        revocation: revocationSource,
        clock,
        logger,
        perMinute: limits.enrollPerMinute,
        handshakeTimeoutMs: limits.handshakeTimeoutMs,
        ...(options.factory === undefined ? {} : { factory: options.factory }),
      });
    }
  } catch (err) {
    await bridge?.close();
    server.close();
    await new Promise<void>((r) => broker.close(() => r()));
    await persistence?.flushed();
    throw err;
  }
  logger.info('broker listening', { mqtt, enrollment: enrollment?.address, spiffeId: self });

  let closed: Promise<void> | undefined;
  return {
    addresses: enrollment === undefined ? { mqtt } : { mqtt, enrollment: enrollment.address },
    get sessionCount() {
      return sessions.size;
    },
    bridgeStats: () => bridge?.stats(),
    persistenceStats: () => persistence?.stats(),
    sharedStats: () => shared.stats(),
    async reloadPolicy(next?: Policy) {
      if (closed !== undefined) throw new TransportError('ERR_BROKER_CLOSED', 'broker is closed');
      policy = next ?? ('file' in policySource ? await loadPolicyFile(policySource.file) : policySource);
      for (const s of sessions.all()) {
        s.grants = grantsFor(policy, s.svid.spiffeId, self);
        if (s.grants === undefined) {
          logger.warn('session closed: no longer allowed by policy', { spiffeId: s.svid.spiffeId });
          s.socket.destroy();
        }
      }
      shared.regrant((c, topic) => sessions.of(c.conn)?.grants?.canSubscribe(topic) === true);
      logger.info('policy reloaded', { rules: policy.rules.length });
    },
    close() {
      closed =
        closed ??
        (async () => {
          for (const off of subscriptions) off();
          server.close();
          sessions.closeAll();
          await enrollment?.close();
          await bridge?.close();
          shared.close();
          await new Promise<void>((r) => broker.close(() => r()));
          await persistence?.flushed();
          await new Promise<void>((r) => (server.listening ? server.close(() => r()) : r()));
        })();
      return closed;
    },
  };
}
