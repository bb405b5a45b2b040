/**
 * The bounds of a plain `node:http` listener that whoever can reach it may misuse (the issuer's
 * probes, the agent's admin socket and metrics port): what Node leaves open, since its own
 * `headersTimeout`/`requestTimeout` are only checked every 30 s and it caps no connection count.
 *
 * - A connection must complete a request's headers within `headersMs` of its accept or of its
 *   last answer (keep-alive), or it is closed: silent sockets, headers a byte at a time, an idle
 *   keep-alive.
 * - With `requestMs`, a request must have been answered within that time of its headers, or its
 *   connection is closed: a body that trickles or never ends.
 * - A request whose body has not ended by the time it is answered loses its connection (an
 *   endless body costs one answer, never a wait).
 * - At most `maxConnections` are open; one more evicts the oldest connection with no request in
 *   progress, so a flood of idle sockets cannot lock out a real client; with none idle, the new
 *   one is closed.
 *
 * One timer per connection on the injected clock; nothing else is kept.
 *
 * @example
 * ```ts
 * const server = createServer(handler);
 * const bounds = boundHttpServer(server, { headersMs: 5000, maxConnections: 32 });
 * await bounds.closeAll(); // at shutdown, after server.close()
 * ```
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { type Clock, systemClock, type Timer } from '../../runtime/core/clock.ts';

export interface HttpBoundsOptions {
  /** From accept, or from the last answer on the connection, to a request's complete headers. */
  readonly headersMs: number;
  /** From a request's headers to its answer (absent: no limit; the handler bounds itself). */
  readonly requestMs?: number;
  /** Open connections at most. */
  readonly maxConnections: number;
  /** Timers run on this clock (default the system clock: network time is real time). */
  readonly clock?: Clock;
}

export interface HttpBounds {
  /** Open connections now. */
  open(): number;
  /** Cancel every timer and close every connection (at shutdown). */
  closeAll(): void;
}

interface Conn {
  timer: Timer | undefined;
  busy: boolean;
}

export function boundHttpServer(server: Server, o: HttpBoundsOptions): HttpBounds {
  const clock = o.clock ?? systemClock;
  /** Open connections, oldest first. */
  const conns = new Map<Socket, Conn>();
  const arm = (socket: Socket, c: Conn, ms: number, name: string): void => {
    c.timer?.cancel();
    c.timer = clock.setTimer(name, ms, () => socket.destroy());
  };
  server.on('connection', (socket: Socket) => {
    if (conns.size >= o.maxConnections) {
      // Make room by the oldest connection that is not being answered; none: refuse this one.
      const idle = [...conns].find(([, c]) => !c.busy);
      if (idle === undefined) {
        socket.destroy();
        return;
      }
      idle[1].timer?.cancel();
      conns.delete(idle[0]);
      idle[0].destroy();
    }
    const c: Conn = { timer: undefined, busy: false };
    conns.set(socket, c);
    arm(socket, c, o.headersMs, 'http-headers');
    socket.once('close', () => {
      c.timer?.cancel();
      conns.delete(socket);
    });
  });
  // Before the application's handler, so a synchronous answer is seen as this request's.
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const c = conns.get(socket);
    if (c === undefined) return;
    c.busy = true;
    c.timer?.cancel();
    c.timer = undefined;
    if (o.requestMs !== undefined) arm(socket, c, o.requestMs, 'http-request');
    res.once('finish', () => {
      c.busy = false;
      c.timer?.cancel();
      c.timer = undefined;
      // Its body still coming (an endless one): answered, the connection goes.
      if (!req.complete) socket.destroy();
      else if (conns.has(socket)) arm(socket, c, o.headersMs, 'http-headers');
    });
  });
  // Node's own timers stay as a backstop (checked only every 30 s).
  server.headersTimeout = o.headersMs;
  server.requestTimeout = o.requestMs ?? 300_000;
  return {
    open: () => conns.size,
    closeAll() {
      for (const [s, c] of conns) {
        c.timer?.cancel();
        s.destroy();
      }
      conns.clear();
    },
  };
}
