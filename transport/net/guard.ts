/**
 * The handshake guard of every TLS listener (the broker's MQTT port, the enrollment port): what
 * Node's `tls.Server` leaves open to an unauthenticated client on the network.
 *
 * - A socket that has not completed its TLS handshake `handshakeTimeoutMs` after it was accepted
 *   is destroyed: raw TCP that never starts TLS, and a slow-loris ClientHello (Node's own
 *   `handshakeTimeout` is an idle timer that each trickled byte re-arms, and when it fires it only
 *   emits `tlsClientError`, it never closes the socket).
 * - `tlsClientError` (a failed or timed-out handshake) destroys the socket instead of only
 *   logging it.
 * - At most `maxConnections` sockets are open at once, counted from accept (handshaking ones
 *   included, not only verified sessions): the kernel connection is closed before any TLS state is
 *   allocated for it (`net.Server.maxConnections`, reported by the `drop` event).
 *
 * One timer per handshaking socket, cancelled at `secureConnection`; nothing is kept per
 * established session. Counters are exposed for status and tests.
 *
 * @example
 * ```ts
 * const server = tls.createServer({ ... });
 * const guard = guardTlsServer(server, { handshakeTimeoutMs: 10_000, maxConnections: 2000, logger, name: 'mqtt' });
 * guard.stats(); // { open, handshaking, timedOut, failed, dropped }
 * ```
 */
import type { Socket } from 'node:net';
import type { Server, TLSSocket } from 'node:tls';
import { type Clock, systemClock, type Timer } from '../../runtime/core/clock.ts';
import type { Logger } from '../../runtime/core/logger.ts';

export interface HandshakeGuardOptions {
  /** A socket must complete its TLS handshake within this many ms of being accepted. */
  readonly handshakeTimeoutMs: number;
  /** Open sockets at once, from accept (default none beyond this guard's own count). */
  readonly maxConnections: number;
  readonly logger: Logger;
  /** Timers run on this clock (default the system clock: network time is real time). */
  readonly clock?: Clock;
  /** The listener's name in logs (`mqtt`, `enrollment`). */
  readonly name?: string;
}

export interface HandshakeGuardStats {
  /** Sockets accepted and not yet closed (handshaking or established). */
  readonly open: number;
  /** Of those, the ones still in their TLS handshake. */
  readonly handshaking: number;
  /** Destroyed because the handshake did not complete in time. */
  readonly timedOut: number;
  /** Destroyed after `tlsClientError` (a failed handshake). */
  readonly failed: number;
  /** Refused at accept because `maxConnections` sockets were open. */
  readonly dropped: number;
}

export interface HandshakeGuard {
  stats(): HandshakeGuardStats;
}

/** Largest timer a guard accepts (a day): a bigger handshake timeout is a configuration error. */
const MAX_TIMEOUT_MS = 86_400_000;

/** The raw TCP socket under a server-side TLSSocket (`_parent`, set by Node's tls.Server since 0.11). */
function rawOf(tlsSocket: TLSSocket): Socket | undefined {
  return (tlsSocket as unknown as { _parent?: Socket | null })._parent ?? undefined;
}

export function guardTlsServer(server: Server, o: HandshakeGuardOptions): HandshakeGuard {
  if (
    !Number.isInteger(o.handshakeTimeoutMs) ||
    o.handshakeTimeoutMs <= 0 ||
    o.handshakeTimeoutMs > MAX_TIMEOUT_MS
  )
    throw new TypeError(`handshakeTimeoutMs must be an integer in (0, ${MAX_TIMEOUT_MS}]`);
  if (!Number.isInteger(o.maxConnections) || o.maxConnections < 1)
    throw new TypeError('maxConnections must be a positive integer');
  const clock = o.clock ?? systemClock;
  const name = o.name ?? 'tls';
  const pending = new Map<Socket, Timer>();
  let open = 0;
  let timedOut = 0;
  let failed = 0;
  let dropped = 0;
  let lastDropLog = Number.NEGATIVE_INFINITY;

  // Counted by Node from accept; a socket over the cap is closed before 'connection' is emitted.
  server.maxConnections = o.maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => {
    dropped++;
    const now = clock.monotonic();
    // One line per 10 s at most: a flood must not become a log flood.
    if (now - lastDropLog >= 10_000) {
      lastDropLog = now;
      o.logger.warn('connection refused: listener full', {
        listener: name,
        maxConnections: o.maxConnections,
        dropped,
        remote: data?.remoteAddress,
      });
    }
  });

  server.on('connection', (raw: Socket) => {
    if (raw.destroyed) return; // refused by an earlier listener (an expired gateway SVID)
    open++;
    const timer = clock.setTimer(`${name}-handshake`, o.handshakeTimeoutMs, () => {
      if (!pending.delete(raw)) return;
      timedOut++;
      o.logger.debug('TLS handshake timed out: socket destroyed', {
        listener: name,
        remote: raw.remoteAddress,
        timeoutMs: o.handshakeTimeoutMs,
      });
      raw.destroy();
    });
    pending.set(raw, timer);
    raw.once('close', () => {
      open--;
      pending.get(raw)?.cancel();
      pending.delete(raw);
    });
  });

  server.on('secureConnection', (socket: TLSSocket) => {
    const raw = rawOf(socket);
    if (raw === undefined) return;
    pending.get(raw)?.cancel();
    pending.delete(raw);
  });

  server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
    failed++;
    o.logger.debug('TLS handshake failed: socket destroyed', {
      listener: name,
      code: (err as { code?: string }).code,
      reason: err.message,
      remote: socket.remoteAddress,
    });
    socket.destroy();
    rawOf(socket)?.destroy();
  });

  return {
    stats: () => ({ open, handshaking: pending.size, timedOut, failed, dropped }),
  };
}
