/**
 * The enrollment listener (default port 8884) speaks EST (RFC 7030) over HTTPS with the gateway
 * SVID, so any device with curl and openssl, or any EST client, gets its device SVID:
 *
 * | request | authentication | answer |
 * |---|---|---|
 * | `GET /.well-known/est/cacerts` | none | the bundle roots, certs-only PKCS#7 |
 * | `POST /.well-known/est/simpleenroll` (`application/pkcs10`) | HTTP Basic: user = device id, password = one-time join token; or a factory client certificate | the device chain, certs-only PKCS#7 |
 * | `POST /.well-known/est/simplereenroll` | the current device certificate (TLS client certificate) | a new chain, same SPIFFE ID, new key allowed |
 * | `GET /.well-known/est/csrattrs` | none | 204 (nothing required) |
 *
 * Bodies are base64 DER both ways (`Content-Transfer-Encoding: base64`): answers in 64-column LF
 * lines with a final newline, CSRs read with CRLF, LF or no line breaks. A success is always
 * 200 (never 202: Azure's EST client does not handle it). A refusal is an HTTP status with a
 * plain-text `CODE: reason` line, and the same typed code in the log:
 * 401 (+ `WWW-Authenticate: Basic`) no, unknown, used or expired token; 401 re-enrollment without
 * a valid device certificate; 400 malformed body or CSR; 403 revoked device, refused factory
 * certificate, CSR naming another device; 413 body over 16 KiB; 429 rate limited (+
 * `Retry-After`); 408 a request not done in time; 503 the gateway cannot sign now.
 *
 * Bootstrap trust (RFC 7030 §4.1.1): the join token carries the SHA-256 fingerprints of the
 * bundle's roots (the signing root last, so a token stays good across an issuer CA switch); the
 * device fetches `cacerts` without verifying, checks that a root has one of them, and only then
 * sends the token over a connection verified against those roots (`est-client.ts`).
 *
 * Nothing accumulates per connection (issue 15, item 4): the handshake guard (`transport/net`)
 * bounds sockets from accept and their handshake time; each connection carries one request
 * (`Connection: close`, the socket is destroyed once the answer is flushed), headers are bounded
 * (8 KiB) and bodies too (16 KiB, refused with 413 before they are read when Content-Length says
 * so), and a connection not answered within `handshakeTimeoutMs` after its handshake is closed
 * (`ERR_ENROLL_BUDGET`). A join token is consumed only together with a successful issuance.
 * Reading a request (body bound, CSR, HTTP Basic, rate limit) and writing answers and refusals
 * are in est-http.ts.
 */
import type { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../../runtime/core/clock.ts';
import { isEdgewardError } from '../../runtime/core/error.ts';
import type { Logger } from '../../runtime/core/logger.ts';
import type { DeviceSigner, RevocationSource, X509Bundle } from '../../runtime/sources/types.ts';
import { deviceSpiffeId, isPathSegment, parseSpiffeId } from '../../runtime/spiffe/id.ts';
import { verifyX509Svid } from '../../runtime/spiffe/verify.ts';
import { TransportError } from '../errors.ts';
import { peerChain } from '../mqtt/peer-chain.ts';
import { type ContextMaterial, refuseWhileExpired } from '../mqtt/tls-context.ts';
import { guardTlsServer, type HandshakeGuardStats } from '../net/guard.ts';
import { assertCsrNames } from './csr-identity.ts';
import { basicAuth, csrOf, HttpRefusal, RateLimiter, refuse, sendCerts, writeAnswer } from './est-http.ts';
import { type FactoryOptions, factoryDeviceId } from './factory.ts';
import { MAX_DEVICE_ID, redeemJoinToken } from './join-token.ts';
import { base64Lines, certsOnly } from './pkcs7.ts';
import type { TokenStore } from './token-store.ts';

/** Largest request head (request line and headers). */
export { MAX_BODY_BYTES } from './est-http.ts';

export const MAX_HEADER_BYTES = 8 * 1024;
/** Open sockets on the enrollment listener, handshaking ones included (default). */
export const DEFAULT_ENROLL_MAX_CONNECTIONS = 64;

export const EST_PATH = '/.well-known/est';
/** Content type of every EST certificate answer. */
export const PKCS7_CERTS_ONLY = 'application/pkcs7-mime; smime-type=certs-only';

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
  /** Enrollment and re-enrollment requests per remote address per minute. */
  readonly perMinute: number;
  /** A socket must finish its TLS handshake within this (from accept), and its request within this after it. */
  readonly handshakeTimeoutMs: number;
  /** Open sockets at once, counted from accept (default `DEFAULT_ENROLL_MAX_CONNECTIONS`). */
  readonly maxConnections?: number;
  readonly factory?: FactoryOptions;
  /** Revoked certificates and IDs: a revoked device certificate does not re-enroll. */
  readonly revocation?: RevocationSource;
}

export interface EnrollmentServer {
  readonly address: { readonly host: string; readonly port: number };
  setMaterial(m: ContextMaterial): void;
  /** The handshake guard's counters (open sockets, timed out, failed, dropped at the cap). */
  guardStats(): HandshakeGuardStats;
  close(): Promise<void>;
}

type Signed = Awaited<ReturnType<DeviceSigner['signDevice']>>;

export async function startEnrollment(o: EnrollmentOptions): Promise<EnrollmentServer> {
  const limiter = new RateLimiter(o.perMinute);
  const server = createServer(
    {
      ...o.material,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      handshakeTimeout: o.handshakeTimeoutMs,
      maxHeaderSize: MAX_HEADER_BYTES,
    },
    (req, res) => {
      answer(req, res).catch((err: unknown) => refuse(o.logger, req, res, err));
    },
  );
  // Node's own request timers are a backstop (checked every 30 s); the budget below is the rule.
  server.requestTimeout = 2 * o.handshakeTimeoutMs;
  server.headersTimeout = 2 * o.handshakeTimeoutMs;
  server.keepAliveTimeout = 1;
  const guard = guardTlsServer(server, {
    handshakeTimeoutMs: o.handshakeTimeoutMs,
    maxConnections: o.maxConnections ?? DEFAULT_ENROLL_MAX_CONNECTIONS,
    logger: o.logger,
    name: 'enrollment',
  });
  refuseWhileExpired(server, o.clock, o.servedUntil, o.onExpiredRefused);
  const live = new Set<TLSSocket>();
  /** The answer in progress on a socket, for the budget timer's 408. */
  const inFlight = new Map<TLSSocket, ServerResponse>();
  server.on('secureConnection', (socket: TLSSocket) => {
    live.add(socket);
    const budget = o.clock.setTimer('enrollment-request', o.handshakeTimeoutMs, () => {
      if (socket.destroyed) return;
      o.logger.warn('enrollment connection closed', {
        code: 'ERR_ENROLL_BUDGET',
        reason: `no answer within ${o.handshakeTimeoutMs} ms`,
        remote: socket.remoteAddress,
      });
      const res = inFlight.get(socket);
      if (res !== undefined && !res.headersSent) {
        writeAnswer(res, 408, 'ERR_ENROLL_BUDGET', `request not done within ${o.handshakeTimeoutMs} ms`);
        const force = setTimeout(() => socket.destroy(), 1000);
        res.once('close', () => clearTimeout(force));
      } else socket.destroy();
    });
    socket.once('close', () => {
      live.delete(socket);
      inFlight.delete(socket);
      budget.cancel();
    });
    socket.on('error', () => socket.destroy());
  });
  server.on('clientError', (err: Error & { code?: string }, socket) => {
    // A request head over MAX_HEADER_BYTES, or not HTTP at all: answered by status, then closed.
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    o.logger.warn('enrollment refused', {
      code: 'ERR_ENROLL_PROTOCOL',
      status,
      reason: err.message,
      remote: (socket as import('node:net').Socket).remoteAddress,
    });
    if (socket.writable)
      socket.end(
        `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
          'Connection: close\r\nContent-Length: 0\r\n\r\n',
      );
    socket.destroy();
  });

  let cacerts: { sequence: number; trustDomain: string; body: string } | undefined;
  const cacertsBody = (): string => {
    const b = o.bundle();
    if (cacerts?.sequence !== b.sequence || cacerts.trustDomain !== b.trustDomain)
      cacerts = {
        sequence: b.sequence,
        trustDomain: b.trustDomain,
        body: base64Lines(certsOnly(b.roots.map((r) => r.raw))),
      };
    return cacerts.body;
  };

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const socket = req.socket as TLSSocket;
    inFlight.set(socket, res);
    const path = (req.url ?? '').split('?')[0] as string;
    const op = path.startsWith(`${EST_PATH}/`) ? path.slice(EST_PATH.length + 1) : undefined;
    const method = req.method ?? '';
    o.logger.debug('enrollment request', { method, path: path.slice(0, 100), remote: socket.remoteAddress });
    const allow = op === 'cacerts' || op === 'csrattrs' ? 'GET' : 'POST';
    if (op !== 'cacerts' && op !== 'csrattrs' && op !== 'simpleenroll' && op !== 'simplereenroll')
      throw new HttpRefusal(404, 'ERR_ENROLL_PROTOCOL', `no such EST operation: ${path.slice(0, 100)}`);
    if (method !== allow)
      throw new HttpRefusal(405, 'ERR_ENROLL_PROTOCOL', `${op} takes ${allow}`, { Allow: allow });
    if (op === 'csrattrs') {
      req.resume();
      res.writeHead(204, { Connection: 'close' });
      res.end();
      return;
    }
    if (op === 'cacerts') {
      req.resume();
      sendCerts(res, cacertsBody(), 'application/pkcs7-mime');
      return;
    }
    if (!limiter.allow(socket.remoteAddress ?? '?', o.clock.now()))
      throw new HttpRefusal(
        429,
        'ERR_ENROLL_RATE_LIMITED',
        'too many enrollment attempts, try again in a minute',
        {
          'Retry-After': '60',
        },
      );
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/pkcs10')
      throw new HttpRefusal(415, 'ERR_ENROLL_PROTOCOL', 'the body must be application/pkcs10 (base64 DER)');
    // Credentials are looked at before the body is read: without any, 401 at once.
    // Read once: a second getPeerX509Certificate() on a socket comes without its issuer links.
    const chain = peerChain(socket);
    const hasCert = chain.length > 0;
    if (op === 'simplereenroll' && !hasCert)
      throw new TransportError(
        'ERR_ENROLL_CERT_REQUIRED',
        're-enrollment needs the current device certificate',
      );
    if (op === 'simpleenroll' && req.headers.authorization === undefined && !hasCert)
      throw new TransportError(
        'ERR_ENROLL_TOKEN_INVALID',
        'no credentials: HTTP Basic (device id, join token) or a factory client certificate',
      );
    const csr = await csrOf(req);
    const signed = op === 'simpleenroll' ? await enrollOne(req, chain, csr) : await reenroll(chain, csr);
    sendCerts(res, base64Lines(certsOnly(signed.chain)), PKCS7_CERTS_ONLY);
  }

  async function enrollOne(req: IncomingMessage, chain: X509Certificate[], csr: Buffer): Promise<Signed> {
    const basic = basicAuth(req.headers.authorization);
    if (basic !== undefined) {
      const { user: deviceId, password: token } = basic;
      if (deviceId.length > MAX_DEVICE_ID || !isPathSegment(deviceId))
        throw new TransportError('ERR_ENROLL_TOKEN_INVALID', 'the user name is not a device id');
      assertCsrNames(csr, deviceId, spiffeIdOf(deviceId));
      // The token is consumed only with a certificate issued: a refused CSR, a revoked device or
      // another device's user name leaves it usable.
      const signed = await redeemJoinToken(
        o.tokens,
        token,
        () => o.clock.now(),
        async (rec) => {
          if (rec.deviceId !== deviceId)
            throw new TransportError(
              'ERR_ENROLL_TOKEN_INVALID',
              `the join token is not for device ${deviceId}`,
            );
          return sign(deviceId, csr);
        },
      );
      return logged(signed, deviceId, 'token');
    }
    if (chain.length === 0)
      throw new TransportError(
        'ERR_ENROLL_TOKEN_INVALID',
        'no credentials: HTTP Basic (device id, join token) or a factory client certificate',
      );
    if (o.factory === undefined)
      throw new TransportError('ERR_ENROLL_FACTORY_REFUSED', 'factory enrollment is not configured');
    const deviceId = factoryDeviceId(chain, o.factory, o.clock.now());
    assertCsrNames(csr, deviceId, spiffeIdOf(deviceId));
    return logged(await sign(deviceId, csr), deviceId, 'factory');
  }

  async function reenroll(chain: X509Certificate[], csr: Buffer): Promise<Signed> {
    if (chain.length === 0)
      throw new TransportError(
        'ERR_ENROLL_CERT_REQUIRED',
        're-enrollment needs the current device certificate',
      );
    let spiffeId: string;
    try {
      spiffeId = verifyX509Svid(chain, {
        now: o.clock.now(),
        bundle: o.bundle(),
        ...(o.revocation === undefined ? {} : { revocation: o.revocation }),
      }).spiffeId;
    } catch (cause) {
      const revoked = isEdgewardError(cause) && cause.code === 'ERR_SVID_REVOKED';
      throw new TransportError(
        revoked ? 'ERR_ENROLL_DEVICE_REVOKED' : 'ERR_ENROLL_CERT_REQUIRED',
        `device certificate refused: ${(cause as Error).message}`,
        { cause },
      );
    }
    const id = parseSpiffeId(spiffeId);
    const deviceId = id.segments.at(-1) as string;
    if (spiffeId !== spiffeIdOf(deviceId) || id.segments.at(-2) !== 'device')
      throw new TransportError('ERR_ENROLL_CERT_REQUIRED', `${spiffeId} is not a device of this gateway`);
    assertCsrNames(csr, deviceId, spiffeId);
    return logged(await sign(deviceId, csr), deviceId, 'reenroll');
  }

  const spiffeIdOf = (deviceId: string): string => deviceSpiffeId(o.signer.gatewayId, deviceId);

  function logged(signed: Signed, deviceId: string, method: string): Signed {
    o.logger.info('device enrolled', { spiffeId: spiffeIdOf(deviceId), method, notAfter: signed.notAfter });
    return signed;
  }

  async function sign(deviceId: string, csrDer: Buffer): Promise<Signed> {
    try {
      return await o.signer.signDevice({ deviceId, csrDer });
    } catch (cause) {
      // A typed enrollment refusal (a revoked device) keeps its code; anything else is "cannot sign".
      if (cause instanceof TransportError && cause.code.startsWith('ERR_ENROLL_')) throw cause;
      if (
        isEdgewardError(cause) &&
        (cause.code === 'ERR_DEVICE_CSR_INVALID' || cause.code === 'ERR_DEVICE_ID_INVALID')
      )
        throw new TransportError('ERR_ENROLL_CSR_INVALID', cause.message, { cause });
      throw new TransportError('ERR_ENROLL_REFUSED', `cannot sign: ${(cause as Error).message}`, { cause });
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
    guardStats: () => guard.stats(),
    close() {
      return new Promise((resolve) => {
        for (const s of live) s.destroy();
        server.close(() => resolve());
      });
    },
  };
}
