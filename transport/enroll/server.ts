/**
 * The enrollment listener (default port 8884): TLS with the gateway SVID, rate limited per remote
 * address, one request per connection (see `wire.ts`). Clients here can do nothing but enroll: the
 * listener speaks no MQTT. A join token is redeemed (single use) before anything is signed; a
 * factory certificate must chain to a manufacturer root. The signed chain and the bundle roots go
 * back; every refusal is logged with its code and answered with `{ error: { code, message } }`.
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
import { type FactoryOptions, factoryDeviceId } from './factory.ts';
import { redeemJoinToken } from './join-token.ts';
import type { TokenStore } from './token-store.ts';
import { asRequest, FrameReader, writeFrame } from './wire.ts';

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
  readonly handshakeTimeoutMs: number;
  readonly factory?: FactoryOptions;
}

export interface EnrollmentServer {
  readonly address: { readonly host: string; readonly port: number };
  setMaterial(m: ContextMaterial): void;
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
  refuseWhileExpired(server, o.clock, o.servedUntil, o.onExpiredRefused);
  const live = new Set<TLSSocket>();
  server.on('tlsClientError', (err) =>
    o.logger.debug('enrollment TLS handshake failed', { reason: err.message }),
  );
  server.on('secureConnection', (socket: TLSSocket) => {
    live.add(socket);
    socket.once('close', () => live.delete(socket));
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
        socket.end();
      }
    });
  });

  async function serve(socket: TLSSocket): Promise<void> {
    const timer = o.clock.setTimer('enrollment-request', o.handshakeTimeoutMs, () => socket.destroy());
    try {
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
      const req = asRequest(await new FrameReader(socket).next());
      let deviceId: string;
      if (req.method === 'token') {
        deviceId = (await redeemJoinToken(o.tokens, req.token, o.clock.now())).deviceId;
      } else {
        if (o.factory === undefined)
          throw new TransportError('ERR_ENROLL_FACTORY_REFUSED', 'factory enrollment is not configured');
        deviceId = factoryDeviceId(peerChain(socket), o.factory, o.clock.now());
      }
      let signed: Awaited<ReturnType<DeviceSigner['signDevice']>>;
      try {
        signed = await o.signer.signDevice({ deviceId, csrDer: req.csr });
      } catch (cause) {
        throw new TransportError('ERR_ENROLL_REFUSED', `cannot sign: ${(cause as Error).message}`, { cause });
      }
      const spiffeId = deviceSpiffeId(o.signer.gatewayId, deviceId);
      o.logger.info('device enrolled', { spiffeId, method: req.method, notAfter: signed.notAfter });
      writeFrame(socket, {
        spiffeId,
        chain: signed.chain.map((c) => new Uint8Array(c)),
        roots: o.bundle().roots.map((r) => new Uint8Array(r.raw)),
        notAfter: signed.notAfter,
      });
      socket.end();
    } finally {
      timer.cancel();
    }
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
    close() {
      return new Promise((resolve) => {
        for (const s of live) s.destroy();
        server.close(() => resolve());
      });
    },
  };
}
