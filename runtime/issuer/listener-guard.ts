/**
 * The attacker bounds of the issuer's HTTPS listeners (the gateway front every gateway of a fleet
 * reaches over the network, and the admin mTLS port): what Node's `https.Server` leaves open to
 * an unauthenticated client.
 *
 * - The handshake guard (`transport/net/guard.ts`): a TLS handshake must complete within
 *   `handshakeTimeoutMs` of accept (raw TCP that never starts TLS, a ClientHello a byte at a
 *   time), a failed handshake destroys its socket, at most `maxConnections` sockets are open
 *   (counted from accept; one more is closed before any TLS state is made for it).
 * - A request budget: after the handshake, and after each answer on a keep-alive connection, a
 *   request's headers AND its whole body must arrive within `requestTimeoutMs` (one timer per
 *   connection, armed from the last event, not re-armed by trickled bytes). Past it the
 *   connection is closed, with a 408 `ERR_ISSUER_REQUEST_TIMEOUT` first when a request is in
 *   progress and unanswered (a body that never completes). Node's own headersTimeout /
 *   requestTimeout are only checked every 30 s; they stay as a backstop.
 * - A request answered before its body ended (an endless body, a 413 over the limit) has its
 *   connection closed after the answer: the rest of the body is never read.
 *
 * What the issuer does with a complete request is not timed here (the store has its own query
 * timeout). Timers run on `clock` (default the system clock: network time is real time).
 *
 * @example
 * ```ts
 * const server = https.createServer(...);
 * guardHttpsListener(server, { limits: DEFAULT_LISTENER_LIMITS, logger, name: 'issuer' });
 * ```
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { guardTlsServer, type HandshakeGuardStats } from '../../transport/net/guard.ts';
import { type Clock, systemClock, type Timer } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';

export interface ListenerLimits {
  /** From accept to a completed TLS handshake. */
  readonly handshakeTimeoutMs: number;
  /** From the handshake, or from the last answer, to a request's complete headers and body. */
  readonly requestTimeoutMs: number;
  /** Sockets open at once, from accept. */
  readonly maxConnections: number;
}

/** The gateway front's defaults (config `listen.handshakeTimeout`, `listen.requestTimeout`, `listen.maxConnections`). */
export const DEFAULT_LISTENER_LIMITS: ListenerLimits = {
  handshakeTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  maxConnections: 4096,
};

export interface ListenerGuardStats extends HandshakeGuardStats {
  /** Connections closed because a request did not arrive within `requestTimeoutMs`. */
  readonly requestTimedOut: number;
}

export interface ListenerGuard {
  stats(): ListenerGuardStats;
}

interface Conn {
  timer: Timer | undefined;
  /** The request being read or answered, if any. */
  req: IncomingMessage | undefined;
  res: ServerResponse | undefined;
}

export function guardHttpsListener(
  server: Server,
  o: { limits: ListenerLimits; logger: Logger; clock?: Clock; name: string },
): ListenerGuard {
  const { handshakeTimeoutMs, requestTimeoutMs, maxConnections } = o.limits;
  if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs <= 0)
    throw new TypeError('requestTimeoutMs must be a positive integer');
  const clock = o.clock ?? systemClock;
  const guard = guardTlsServer(server, {
    handshakeTimeoutMs,
    maxConnections,
    logger: o.logger,
    clock,
    name: o.name,
  });
  // A backstop only (Node checks these every 30 s); the per-connection timer below is the rule.
  server.requestTimeout = handshakeTimeoutMs + 2 * requestTimeoutMs;
  server.headersTimeout = server.requestTimeout;
  /** How long an answered connection may take to flush its last answer before it is cut. */
  const closeMs = Math.min(1000, requestTimeoutMs);
  const conns = new Map<Socket, Conn>();
  let requestTimedOut = 0;

  const expire = (socket: TLSSocket, c: Conn) => {
    c.timer = undefined;
    if (socket.destroyed) return;
    requestTimedOut++;
    const inBody = c.req !== undefined && !c.req.complete;
    o.logger.debug('request not received in time: connection closed', {
      listener: o.name,
      code: 'ERR_ISSUER_REQUEST_TIMEOUT',
      phase: inBody ? 'body' : 'headers',
      remote: socket.remoteAddress,
      timeoutMs: requestTimeoutMs,
    });
    const res = c.res;
    if (inBody && res !== undefined && !res.headersSent && !res.writableEnded) {
      // The answer goes out, then the connection (finish below: the body did not end).
      const bytes = Buffer.from(
        JSON.stringify({
          error: {
            code: 'ERR_ISSUER_REQUEST_TIMEOUT',
            message: `request not received within ${requestTimeoutMs} ms`,
          },
        }),
      );
      res.writeHead(408, {
        'content-type': 'application/json',
        'content-length': bytes.length,
        connection: 'close',
      });
      res.end(bytes);
      c.timer = clock.setTimer(`${o.name}-close`, closeMs, () => socket.destroy());
      return;
    }
    socket.destroy();
  };
  const arm = (socket: TLSSocket, c: Conn) => {
    c.timer?.cancel();
    c.timer = clock.setTimer(`${o.name}-request`, requestTimeoutMs, () => expire(socket, c));
  };

  server.on('secureConnection', (socket: TLSSocket) => {
    const c: Conn = { timer: undefined, req: undefined, res: undefined };
    conns.set(socket, c);
    arm(socket, c);
    socket.once('close', () => {
      c.timer?.cancel();
      conns.delete(socket);
    });
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket as TLSSocket;
    const c = conns.get(socket);
    if (c === undefined) return;
    c.req = req;
    c.res = res;
    // The budget runs on until the body has arrived; the answer itself is not timed here.
    const arrived = () => {
      if (c.req === req) {
        c.timer?.cancel();
        c.timer = undefined;
      }
    };
    if (req.complete) arrived();
    else req.once('end', arrived);
    res.once('finish', () => {
      if (c.req === req) {
        c.req = undefined;
        c.res = undefined;
      }
      if (!req.complete) {
        // Answered before its body ended: the rest is never read; the connection goes.
        socket.end();
        c.timer?.cancel();
        c.timer = clock.setTimer(`${o.name}-close`, closeMs, () => socket.destroy());
      } else if (!socket.destroyed) arm(socket, c);
    });
  });

  return { stats: () => ({ ...guard.stats(), requestTimedOut }) };
}
