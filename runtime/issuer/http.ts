/**
 * The issuer's HTTPS front: versioned paths (`runtime/upstream/protocol.ts`), CBOR in and out,
 * a body limit, content-type checks, and every failure as `{ error: { code, message } }` with
 * the status the protocol names. TLS asks for a client certificate but does not require one:
 * attestation and recovery come without, renewal and the device issuance log must present the
 * gateway SVID (checked by the issuer). Bodies are at most 64 KiB (384 KiB for the issuance log):
 * refused 413 when declared or grown past that, the rest never read. The listener is bounded
 * against the network by `listener-guard.ts` (handshake deadline, connection cap, request budget).
 *
 * @example
 * ```ts
 * const server = createIssuerServer(issuer, { cert, key }, logger);
 * server.listen(0, '127.0.0.1');
 * ```
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import type { Logger } from '../core/logger.ts';
import { FIRMWARE_PATHS } from '../firmware/protocol.ts';
import {
  CBOR_CONTENT_TYPE,
  type ErrorBody,
  MAX_BODY_BYTES,
  MAX_DEVICES_ISSUED_BODY_BYTES,
  PATHS,
} from '../upstream/protocol.ts';
import type { RequestContext } from './core.ts';
import type { Issuer } from './issuer.ts';
import { DEFAULT_LISTENER_LIMITS, guardHttpsListener, type ListenerLimits } from './listener-guard.ts';
import { issuerCbor } from './store.ts';

const STATUS: Record<string, number> = {
  ERR_ISSUER_BAD_REQUEST: 400,
  ERR_ISSUER_SERVER_NAME: 403,
  ERR_CSR_MALFORMED: 400,
  ERR_CSR_SIGNATURE: 400,
  ERR_CSR_WEAK_KEY: 400,
  ERR_DER_MALFORMED: 400,
  ERR_SVID_ID_INVALID: 400,
  ERR_SPIFFE_ID_INVALID: 400,
  ERR_ISSUER_MANIFEST_INVALID: 400,
  ERR_MANIFEST_INVALID: 400,
  ERR_MANIFEST_UNKNOWN_KEY: 403,
  ERR_MANIFEST_SIGNATURE: 403,
  ERR_ISSUER_TOKEN_INVALID: 401,
  ERR_ISSUER_CHAIN_INVALID: 401,
  ERR_ISSUER_POP_INVALID: 401,
  ERR_ISSUER_CA_EXPIRED: 401,
  ERR_ISSUER_CA_UNKNOWN: 401,
  ERR_ISSUER_DEVICE_SCOPE: 403,
  ERR_ISSUER_JWT_SCOPE: 403,
  ERR_ISSUER_JWT_KEY: 503,
  ERR_ISSUER_CREDENTIAL: 401,
  ERR_ISSUER_QUOTE_INVALID: 401,
  ERR_ISSUER_CLIENT_CERT: 401,
  ERR_ATTEST_QUOTE_INVALID: 401,
  ERR_ATTEST_PUBLIC_INVALID: 401,
  ERR_ATTEST_CREDENTIAL: 401,
  ERR_ATTEST_EK_CHAIN: 401,
  ERR_ATTEST_EK_CERT_INVALID: 401,
  ERR_ISSUER_METHOD_DISABLED: 403,
  ERR_ISSUER_NOT_REGISTERED: 403,
  ERR_ISSUER_GATEWAY_DISABLED: 403,
  ERR_ISSUER_PCR_MISMATCH: 403,
  ERR_ISSUER_REVOKED: 403,
  ERR_ISSUER_NOT_FOUND: 404,
  ERR_ISSUER_FIRMWARE_UNKNOWN: 404,
  ERR_ISSUER_FIRMWARE_TICKET: 401,
  ERR_ISSUER_FIRMWARE_UNPROVEN: 409,
  ERR_ISSUER_SESSION_UNKNOWN: 409,
  ERR_ISSUER_SESSION_EXPIRED: 409,
  ERR_ISSUER_BODY_TOO_LARGE: 413,
  ERR_ISSUER_CONTENT_TYPE: 415,
  ERR_ISSUER_RATE_LIMITED: 429,
  ERR_ISSUER_REQUEST_TIMEOUT: 408,
  ERR_ISSUER_CLOSED: 503,
  ERR_ISSUER_STORE_UNAVAILABLE: 503,
  // A write that kept losing races to other replicas (after its retries): try again, or another replica.
  ERR_ISSUER_STORE_CONFLICT: 503,
  ERR_ISSUER_DRAINING: 503,
  // At request time: this replica does not hold the active CA's key (a rotation it was not given
  // the next key for). A replica's state, not a server bug: another replica can sign (/readyz says why).
  ERR_ISSUER_CA_INVALID: 503,
  // The CA key's token failed or went away on this replica: another replica (or later) may sign.
  ERR_ISSUER_PKCS11_TOKEN: 503,
  // ca rotate refused: live replicas lack the next CA key (they must get it, or stop, first).
  ERR_ISSUER_CA_KEY_MISSING: 409,
  ERR_ISSUER_ADMIN_FORBIDDEN: 403,
  ERR_ISSUER_ADMIN_TIMEOUT: 408,
};

/**
 * The HTTP status the issuer answers a refusal with: the protocol's table, else 500 for an
 * unlisted issuer code (an internal failure) and 400 for any other code.
 */
export function statusFor(code: string): number {
  return STATUS[code] ?? (code.startsWith('ERR_ISSUER_') ? 500 : 400);
}

class HttpRefusal extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/** A body cut off by its client or by the listener's request budget: nothing to answer. */
class BodyGone extends Error {}

/**
 * The body, at most `limit` bytes: one declared larger is refused before a byte is read, one
 * that grows past it as soon as it does; the rest is never read (the listener guard closes the
 * connection once the 413 is out).
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new HttpRefusal('ERR_ISSUER_BODY_TOO_LARGE', `body over ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.off('data', onData);
        req.pause();
        chunks.length = 0;
        reject(new HttpRefusal('ERR_ISSUER_BODY_TOO_LARGE', `body over ${limit} bytes`));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', () => reject(new BodyGone('request body cut off')));
    req.on('close', () => {
      if (!req.complete) reject(new BodyGone('request body cut off'));
    });
  });
}

async function cborBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== CBOR_CONTENT_TYPE)
    throw new HttpRefusal('ERR_ISSUER_CONTENT_TYPE', `content type must be ${CBOR_CONTENT_TYPE}`);
  const raw = await readBody(req, limit);
  try {
    return issuerCbor.decode(raw);
  } catch {
    throw new HttpRefusal('ERR_ISSUER_BAD_REQUEST', 'body is not well-formed CBOR');
  }
}

function send(res: ServerResponse, status: number, body: unknown, type = CBOR_CONTENT_TYPE): void {
  const bytes =
    type === CBOR_CONTENT_TYPE
      ? Buffer.from(issuerCbor.encode(body) as Uint8Array)
      : Buffer.from(String(body));
  res.writeHead(status, {
    'content-type': type,
    'content-length': bytes.length,
    'cache-control': 'no-store',
  });
  res.end(bytes);
}

export interface TlsMaterial {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
}

/** What the daemon's drain needs of the front: is it draining, and how many requests are in flight. */
export interface FrontGate {
  draining(): boolean;
  /** Told when a request starts (+1) and when its response closed (-1). */
  count(delta: 1 | -1): void;
}

export function createIssuerServer(
  issuer: Issuer,
  tls: TlsMaterial,
  logger: Logger,
  gate?: FrontGate,
  bounds?: { readonly limits?: Partial<ListenerLimits>; readonly clock?: Clock },
): Server {
  const server = createServer(
    {
      cert: tls.cert,
      key: tls.key,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    },
    (req, res) => {
      if (gate?.draining() === true) {
        // A request on a connection accepted before the drain: refuse it so the client retries
        // another replica, and close the connection.
        req.resume();
        res.setHeader('connection', 'close');
        send(res, 503, { error: { code: 'ERR_ISSUER_DRAINING', message: 'issuer is draining' } });
        return;
      }
      gate?.count(1);
      res.once('close', () => gate?.count(-1));
      handle(issuer, req, res).catch((err: unknown) => {
        logger.error('issuer request failed', { error: String(err) });
        if (!res.headersSent)
          send(res, 500, { error: { code: 'ERR_ISSUER_INTERNAL', message: 'internal error' } });
      });
    },
  );
  guardHttpsListener(server, {
    limits: { ...DEFAULT_LISTENER_LIMITS, ...bounds?.limits },
    logger,
    ...(bounds?.clock === undefined ? {} : { clock: bounds.clock }),
    name: 'issuer',
  });
  return server;
}

async function handle(issuer: Issuer, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const socket = req.socket as TLSSocket;
  // The X509Certificate of the handshake: no DER re-parse, no fingerprints (getPeerCertificate's).
  const peer = socket.getPeerX509Certificate?.();
  const ctx: RequestContext = {
    address: socket.remoteAddress ?? 'unknown',
    ...(peer !== undefined && peer.raw.length > 0 ? { peerCertificate: peer.raw, peerX509: peer } : {}),
  };
  const url = new URL(req.url ?? '/', 'https://issuer.invalid');
  const route = `${req.method} ${url.pathname}`;
  try {
    switch (route) {
      case `POST ${PATHS.attestBegin}`:
        return send(res, 200, await issuer.attestBegin(await cborBody(req), ctx));
      case `POST ${PATHS.attestFinish}`:
        return send(res, 200, await issuer.attestFinish(await cborBody(req), ctx));
      case `POST ${PATHS.renewBegin}`:
        await cborBody(req);
        return send(res, 200, await issuer.renewBegin(ctx));
      case `POST ${PATHS.renewFinish}`:
        return send(res, 200, await issuer.renewFinish(await cborBody(req), ctx));
      case `POST ${PATHS.recoverBegin}`:
        return send(res, 200, await issuer.recoverBegin(await cborBody(req), ctx));
      case `POST ${PATHS.recoverFinish}`:
        return send(res, 200, await issuer.recoverFinish(await cborBody(req), ctx));
      case `POST ${PATHS.devicesIssued}`:
        return send(
          res,
          200,
          await issuer.devicesIssued(await cborBody(req, MAX_DEVICES_ISSUED_BODY_BYTES), ctx),
        );
      case `POST ${PATHS.jwtSvid}`:
        return send(res, 200, await issuer.jwtSvid(await cborBody(req), ctx));
      case `GET ${PATHS.bundle}`: {
        const b = issuer.bundle();
        return send(res, 200, b.json, 'application/json');
      }
      case `GET ${PATHS.revocations}`: {
        const since = url.searchParams.get('since') ?? '0';
        if (!/^\d{1,15}$/.test(since))
          throw new HttpRefusal('ERR_ISSUER_BAD_REQUEST', 'since must be a non-negative integer');
        return send(res, 200, issuer.revocationFeed(Number(since)));
      }
      case `POST ${PATHS.manifests}`:
        return send(res, 200, await issuer.addManifest(await cborBody(req), ctx));
      case `POST ${FIRMWARE_PATHS.stage}`:
        return send(res, 200, await issuer.stageFirmware(await cborBody(req), ctx));
      case `POST ${FIRMWARE_PATHS.commit}`:
        return send(res, 200, await issuer.endFirmware('commit', await cborBody(req), ctx));
      case `POST ${FIRMWARE_PATHS.retract}`:
        return send(res, 200, await issuer.endFirmware('retract', await cborBody(req), ctx));
      default:
        throw new HttpRefusal('ERR_ISSUER_NOT_FOUND', `no route ${route}`);
    }
  } catch (err) {
    // Its client or the request budget cut the body: the connection is gone or answered.
    if (err instanceof BodyGone || res.writableEnded || res.destroyed) return;
    if (err instanceof HttpRefusal)
      await issuer.refuse(err.code, ctx, `${route}: ${err.message}`).catch(() => {});
    if (!(err instanceof HttpRefusal) && !isEdgewardError(err)) throw err;
    const code = err.code;
    const body: ErrorBody = { error: { code, message: err.message } };
    const retry = (err as { fields?: { retryAfterMs?: unknown } }).fields?.retryAfterMs;
    if (typeof retry === 'number') body.error.retryAfterMs = retry;
    if (typeof retry === 'number') res.setHeader('retry-after', String(Math.ceil(retry / 1000)));
    send(res, statusFor(code), body);
  }
}
