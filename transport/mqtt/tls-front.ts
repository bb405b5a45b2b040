/**
 * The broker's TLS front: the main `tls.Server`, the material it presents (from an injected
 * `SvidSource`, whichever certificate that is, and the trust domain's bundle), its refresh when
 * either changes (one `SecureContext` swapped by `setSecureContext`, no connection dropped), the
 * refusal of every connection while the presented certificate is expired, and the verification
 * of each peer's chain (X.509-SVID rules, chain to the bundle, path scoping, revocation). Only a
 * verified socket reaches `onSession`; a failure is logged with its code and the socket destroyed.
 *
 * @example
 * ```ts
 * const front = new TlsFront({ svidSource, bundleSource, revocationSource, trustDomain, clock,
 *   logger, limits, onSession: (socket, svid) => broker.handle(socket) });
 * front.start();
 * const at = await front.listen({ host: '0.0.0.0', port: 8883 });
 * front.onMaterial((m) => enrollment.setMaterial(m)); // another listener serving the same material
 * await front.close();
 * ```
 */
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Clock } from '../../runtime/core/clock.ts';
import { isEdgewardError } from '../../runtime/core/error.ts';
import type { Logger } from '../../runtime/core/logger.ts';
import { SpiffeError } from '../../runtime/errors.ts';
import type { BundleSource, RevocationSource, SvidSource, Unsubscribe } from '../../runtime/sources/types.ts';
import { SvidVerifier, type VerifiedSvid } from '../../runtime/spiffe/verify.ts';
import { TransportError } from '../errors.ts';
import { guardTlsServer } from '../net/guard.ts';
import { peerChain } from './peer-chain.ts';
import { type ContextMaterial, materialFor, refuseWhileExpired, SERVER_TLS_OPTIONS } from './tls-context.ts';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface TlsFrontOptions {
  /** The certificate the listener presents (and its key); its SPIFFE ID is the broker's `self`. */
  readonly svidSource: SvidSource;
  readonly bundleSource: BundleSource;
  readonly revocationSource: RevocationSource;
  readonly trustDomain: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly limits: {
    readonly handshakeTimeoutMs: number;
    readonly maxConnections: number;
    /** A verified socket with no traffic for this long is closed (independent of MQTT keepalive). */
    readonly maxIdleMs: number;
  };
  /** A socket whose peer chain verified. */
  readonly onSession: (socket: TLSSocket, svid: VerifiedSvid) => void;
  /** The source has no valid certificate any more (ERR_SVID_UNAVAILABLE at a change); optional. */
  readonly onUnavailable?: () => void;
}

/** The one error listener of every main-listener socket (a shared function, not a closure each). */
function destroySocket(this: TLSSocket): void {
  this.destroy();
}

/** The idle timeout of every verified socket: closed, with the reason. */
function closeIdle(this: TLSSocket): void {
  this.destroy(new TransportError('ERR_MQTT_IDLE_TIMEOUT', 'no traffic within the broker maxIdleMs'));
}

export class TlsFront {
  readonly server: Server;
  readonly #o: TlsFrontOptions;
  readonly #verifier = new SvidVerifier();
  readonly #subscriptions: Unsubscribe[] = [];
  readonly #materialListeners: ((m: ContextMaterial) => void)[] = [];
  #self: string;
  /** NotAfter of the certificate the listeners present; -Infinity once the source has none valid. */
  #servedUntil: number;
  #refusing = false;

  constructor(o: TlsFrontOptions) {
    this.#o = o;
    const first = o.svidSource.getX509Svid();
    this.#self = first.spiffeId;
    this.#servedUntil = first.notAfter;
    this.server = createServer({
      ...this.material(),
      requestCert: true,
      // Chain errors are judged (and logged) by the SPIFFE verifier below, not by a silent handshake abort.
      rejectUnauthorized: false,
      ...SERVER_TLS_OPTIONS,
      handshakeTimeout: o.limits.handshakeTimeoutMs,
    });
    guardTlsServer(this.server, {
      handshakeTimeoutMs: o.limits.handshakeTimeoutMs,
      maxConnections: o.limits.maxConnections,
      logger: o.logger,
      name: 'mqtt',
    });
    this.server.maxConnections = o.limits.maxConnections;
    // A socket not through its handshake in time is destroyed; connections are capped from accept.
    guardTlsServer(this.server, {
      handshakeTimeoutMs: o.limits.handshakeTimeoutMs,
      maxConnections: o.limits.maxConnections,
      logger: o.logger,
      name: 'mqtt',
    });
    // An expired gateway SVID is never presented: connections wait for the next rotation.
    refuseWhileExpired(this.server, o.clock, () => this.#servedUntil, this.refusedExpired('mqtt'));
    this.server.on('tlsClientError', (err) =>
      o.logger.debug('TLS handshake failed', { reason: err.message }),
    );
    this.server.on('secureConnection', (socket: TLSSocket) => this.#verify(socket));
  }

  /** The SPIFFE ID of the certificate presented. */
  get self(): string {
    return this.#self;
  }

  /** NotAfter (epoch ms) of the certificate presented; -Infinity when there is none valid. */
  get servedUntil(): number {
    return this.#servedUntil;
  }

  /** Key, chain and roots to present now. */
  material(): ContextMaterial {
    return materialFor(
      this.#o.svidSource.getX509Svid(),
      this.#o.bundleSource.getBundleFor(this.#o.trustDomain),
    );
  }

  /** Called with the new material at each refresh (for other listeners presenting the same). */
  onMaterial(listener: (m: ContextMaterial) => void): void {
    this.#materialListeners.push(listener);
  }

  /** The refusal of one connection on `listener` while the certificate presented is expired. */
  refusedExpired(listener: string): (remote: string | undefined) => void {
    return (remote) => {
      if (!this.#refusing)
        this.#o.logger.error('gateway SVID expired: new connections refused until it rotates', {
          code: 'ERR_SVID_UNAVAILABLE',
          notAfter: this.#servedUntil,
        });
      this.#refusing = true;
      this.#o.logger.debug('connection refused: gateway SVID expired', { listener, remote });
    };
  }

  /** Follows the SVID and bundle sources. */
  start(): void {
    const rotate = (): void => this.#rotate();
    this.#subscriptions.push(this.#o.svidSource.onChange(rotate));
    this.#subscriptions.push(this.#o.bundleSource.onChange(rotate));
  }

  listen(at: Endpoint): Promise<Endpoint> {
    const server = this.server;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(
          new TransportError('ERR_BROKER_LISTEN', `cannot listen on ${at.host}:${at.port}: ${err.message}`),
        );
      server.once('error', onError);
      server.listen(at.port, at.host, () => {
        server.off('error', onError);
        const a = server.address() as AddressInfo;
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  /** Stops following the sources and accepting connections; `closed()` resolves once every socket is gone. */
  stop(): void {
    for (const off of this.#subscriptions.splice(0)) off();
    if (this.server.listening) this.server.close();
  }

  closed(): Promise<void> {
    return new Promise<void>((r) => (this.server.listening ? this.server.once('close', () => r()) : r()));
  }

  #rotate(): void {
    const { svidSource, bundleSource, trustDomain, logger } = this.#o;
    try {
      const svid = svidSource.getX509Svid();
      const m = materialFor(svid, bundleSource.getBundleFor(trustDomain));
      this.server.setSecureContext({ ...m, ...SERVER_TLS_OPTIONS });
      for (const l of this.#materialListeners) l(m);
      this.#self = svid.spiffeId;
      this.#servedUntil = svid.notAfter;
      this.#refusing = false;
      logger.info('broker certificate rotated', { spiffeId: this.#self });
    } catch (err) {
      const code = isEdgewardError(err) ? err.code : undefined;
      // No valid SVID any more (expired): refuse connections rather than present the old one.
      if (code === 'ERR_SVID_UNAVAILABLE') this.#servedUntil = Number.NEGATIVE_INFINITY;
      logger.error('broker certificate not rotated', { code, reason: (err as Error).message });
      if (code === 'ERR_SVID_UNAVAILABLE') this.#o.onUnavailable?.();
    }
  }

  #verify(socket: TLSSocket): void {
    const { clock, bundleSource, trustDomain, revocationSource, logger } = this.#o;
    socket.on('error', destroySocket);
    let svid: VerifiedSvid;
    try {
      const chain = peerChain(socket);
      if (chain.length === 0) throw new SpiffeError('ERR_SVID_INVALID', 'no client certificate presented');
      svid = this.#verifier.verifyCerts(chain, {
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
    // Node's socket timeout: no bytes read or written for maxIdleMs (one shared listener).
    socket.setTimeout(this.#o.limits.maxIdleMs);
    socket.on('timeout', closeIdle);
    this.#o.onSession(socket, svid);
  }
}
