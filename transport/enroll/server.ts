/**
 * The enrollment listener (default port 8884): TLS with the gateway SVID, rate limited per remote
 * address, one request per connection (see `wire.ts`). Clients here can do nothing but enroll: the
 * listener speaks no MQTT. A join token is redeemed (single use) before anything is signed; a
 * factory certificate must chain to a manufacturer root. The signed chain and the bundle roots go
 * back; every refusal is logged with its code and answered with `{ error: { code, message } }`.
 *
 * Nothing accumulates per connection (issue 15, item 4): the handshake guard (`transport/net`)
 * bounds sockets from accept and their handshake time; after the handshake a connection may
 * send at most `MAX_CONNECTION_BYTES` (one request frame) and must be done within
 * `requestTimeoutMs`, else it is destroyed (`ERR_ENROLL_BUDGET`); after any answer (an error
 * included) the gateway closes, and nothing the client sends after its request is read.
 */
import type { AddressInfo } from 'node:net';
import { createServer, type TLSSocket } from 'node:tls';
import type { Clock } from '../../runtime/core/clock.ts';
import { isEdgewardError } from '../../runtime/core/error.ts';
import type { Logger } from '../../runtime/core/logger.ts';
import type { DeviceSigner, X509Bundle } from '../../runtime/sources/types.ts';
import { deviceSpiffeId } from '../../runtime/spiffe/id.ts';
import { TransportError } from '../errors.ts';
import { peerChain } from '../mqtt/peer-chain.ts';
import { type ContextMaterial, refuseWhileExpired } from '../mqtt/tls-context.ts';
import { guardTlsServer, type HandshakeGuardStats } from '../net/guard.ts';
import { type FactoryOptions, factoryDeviceId } from './factory.ts';
import { redeemJoinToken } from './join-token.ts';
import type { TokenStore } from './token-store.ts';
import { asRequest, FrameReader, MAX_FRAME, writeFrame } from './wire.ts';

/** Bytes a client may send after the handshake: one request frame. */
export const MAX_CONNECTION_BYTES = MAX_FRAME + 4;
/** Open sockets on the enrollment listener, handshaking ones included (default). */
export const DEFAULT_ENROLL_MAX_CONNECTIONS = 64;

export interface EnrollmentOptions {
  readonly at: { readonly host: string; readonly port: number };
  readonly material: ContextMaterial;
  /** NotAfter of the certificate in `material` (and in each `setMaterial`): refused from then on. */
  readonly servedUntil: () => number;
  readonly onExpiredRefused: (remote: string | undefined) => void;
  readonly bundle: () => X509Bundle;
  readonly signer: DeviceSigner;
  readonly tokens: TokenStore;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Attempts per remote address per minute. */
  readonly perMinute: number;
  /** A socket must finish its TLS handshake within this (from accept), and its request within this after it. */
  readonly handshakeTimeoutMs: number;
  /** Open sockets at once, counted from accept (default `DEFAULT_ENROLL_MAX_CONNECTIONS`). */
  readonly maxConnections?: number;
  readonly factory?: FactoryOptions;
}

export interface EnrollmentServer {
  readonly address: { readonly host: string; readonly port: number };
  setMaterial(m: ContextMaterial): void;
  /** The handshake guard's counters (open sockets, timed out, failed, dropped at the cap). */
  guardStats(): HandshakeGuardStats;
  close(): Promise<void>;
}

/** Fixed one-minute windows per address; the table is bounded. */
class RateLimiter {
  readonly #seen = new Map<string, { start: number; count: number }>();
  readonly #perMinute: number;
  constructor(perMinute: number) {
    this.#perMinute = perMinute;
  }
  allow(addr: string, now: number): boolean {
    let e = this.#seen.get(addr);
    if (e === undefined || now - e.start >= 60_000) {
      if (this.#seen.size > 10_000) this.#seen.clear();
      e = { start: now, count: 0 };
      this.#seen.set(addr, e);
    }
    e.count++;
    return e.count <= this.#perMinute;
  }
}

export async function startEnrollment(o: EnrollmentOptions): Promise<EnrollmentServer> {
  const limiter = new RateLimiter(o.perMinute);
  const server = createServer({
    ...o.material,
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
    handshakeTimeout: o.handshakeTimeoutMs,
  });
  const guard = guardTlsServer(server, {
    handshakeTimeoutMs: o.handshakeTimeoutMs,
    maxConnections: o.maxConnections ?? DEFAULT_ENROLL_MAX_CONNECTIONS,
    logger: o.logger,
    name: 'enrollment',
  });
  refuseWhileExpired(server, o.clock, o.servedUntil, o.onExpiredRefused);
  const live = new Set<TLSSocket>();
  server.on('secureConnection', (socket: TLSSocket) => {
    live.add(socket);
    // The request budget: done within the time, and no more bytes than one request frame.
    const budget = o.clock.setTimer('enrollment-request', o.handshakeTimeoutMs, () => {
      if (socket.destroyed) return;
      o.logger.warn('enrollment connection closed', {
        code: 'ERR_ENROLL_BUDGET',
        reason: `no answer within ${o.handshakeTimeoutMs} ms`,
        remote: socket.remoteAddress,
      });
      socket.destroy();
    });
    let received = 0;
    socket.on('data', (d: Buffer) => {
      received += d.length;
      if (received > MAX_CONNECTION_BYTES && !socket.destroyed) {
        o.logger.warn('enrollment connection closed', {
          code: 'ERR_ENROLL_BUDGET',
          reason: `more than ${MAX_CONNECTION_BYTES} bytes sent`,
          remote: socket.remoteAddress,
        });
        socket.destroy();
      }
    });
    socket.once('close', () => {
      live.delete(socket);
      budget.cancel();
    });
    socket.on('error', () => socket.destroy());
    serve(socket).catch((err: unknown) => {
      const code = isEdgewardError(err) ? err.code : 'ERR_ENROLL_REFUSED';
      const message = isEdgewardError(err) ? err.message : 'enrollment failed';
      o.logger.warn('enrollment refused', {
        code,
        reason: (err as Error).message,
        remote: socket.remoteAddress,
      });
      if (!socket.destroyed) {
        writeFrame(socket, { error: { code, message } });
        closeAfterAnswer(socket);
      }
    });
  });

  async function serve(socket: TLSSocket): Promise<void> {
    if (!limiter.allow(socket.remoteAddress ?? '?', o.clock.now())) {
      throw new TransportError(
        'ERR_ENROLL_RATE_LIMITED',
        'too many enrollment attempts, try again in a minute',
      );
    }
    const bundle = o.bundle();
    writeFrame(socket, {
      v: 1,
      trustDomain: bundle.trustDomain,
      roots: bundle.roots.map((r) => new Uint8Array(r.raw)),
    });
    const reader = new FrameReader(socket);
    const frame = await reader.next();
    reader.dispose(); // one request per connection: whatever follows is not read
    const req = asRequest(frame);
    const sign = async (deviceId: string) => {
      try {
        return { deviceId, signed: await o.signer.signDevice({ deviceId, csrDer: req.csr }) };
      } catch (cause) {
        // A typed enrollment refusal (a revoked device) keeps its code; anything else is "cannot sign".
        if (cause instanceof TransportError && cause.code.startsWith('ERR_ENROLL_')) throw cause;
        throw new TransportError('ERR_ENROLL_REFUSED', `cannot sign: ${(cause as Error).message}`, {
          cause,
        });
      }
    };
    let deviceId: string;
    let signed: Awaited<ReturnType<DeviceSigner['signDevice']>>;
    if (req.method === 'token') {
      // The token is consumed only with a certificate issued: a refused CSR leaves it usable.
      ({ deviceId, signed } = await redeemJoinToken(
        o.tokens,
        req.token,
        () => o.clock.now(),
        (rec) => sign(rec.deviceId),
      ));
    } else {
      if (o.factory === undefined)
        throw new TransportError('ERR_ENROLL_FACTORY_REFUSED', 'factory enrollment is not configured');
      ({ deviceId, signed } = await sign(factoryDeviceId(peerChain(socket), o.factory, o.clock.now())));
    }
    const spiffeId = deviceSpiffeId(o.signer.gatewayId, deviceId);
    o.logger.info('device enrolled', { spiffeId, method: req.method, notAfter: signed.notAfter });
    writeFrame(socket, {
      spiffeId,
      chain: signed.chain.map((c) => new Uint8Array(c)),
      roots: o.bundle().roots.map((r) => new Uint8Array(r.raw)),
      notAfter: signed.notAfter,
    });
    closeAfterAnswer(socket);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(
        new TransportError('ERR_BROKER_LISTEN', `cannot listen on ${o.at.host}:${o.at.port}: ${err.message}`),
      ),
    );
    server.listen(o.at.port, o.at.host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    address: { host: a.address, port: a.port },
    setMaterial(m) {
      server.setSecureContext({ ...m, minVersion: 'TLSv1.2' });
    },
    guardStats: () => guard.stats(),
    close() {
      return new Promise((resolve) => {
        for (const s of live) s.destroy();
        server.close(() => resolve());
      });
    },
  };
}

/**
 * After an answer (an error included) the gateway is done: TLS close_notify and FIN once the
 * answer is flushed, then the socket is destroyed, whatever the client still sends.
 */
function closeAfterAnswer(socket: TLSSocket): void {
  socket.end(() => socket.destroy());
}
