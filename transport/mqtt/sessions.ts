/**
 * The live sessions of the main listener: one per TLS socket whose peer chain verified. Each has
 * an expiry timer on the injected Clock at the chain's earliest NotAfter (TLS never re-checks a
 * certificate after the handshake), and is found by SPIFFE ID and by serial when the revocation
 * source reports something, so that session is closed at once.
 */
import type { TLSSocket } from 'node:tls';
import type { Clock, Timer } from '../../runtime/core/clock.ts';
import type { Logger } from '../../runtime/core/logger.ts';
import type { VerifiedSvid } from '../../runtime/spiffe/verify.ts';
import type { Grants } from '../policy/grants.ts';

export interface Session {
  readonly socket: TLSSocket;
  readonly svid: VerifiedSvid;
  /** undefined when no policy rule matches: CONNECT is then refused with CONNACK 5. */
  grants: Grants | undefined;
  /** The MQTT client id once CONNECT was accepted. */
  clientId: string | undefined;
  timer: Timer | undefined;
}

export class Sessions {
  readonly #bySocket = new WeakMap<object, Session>();
  readonly #all = new Set<Session>();
  readonly #clock: Clock;
  readonly #logger: Logger;

  constructor(clock: Clock, logger: Logger) {
    this.#clock = clock;
    this.#logger = logger;
  }

  /** Register a verified socket; it is closed at `svid.notAfter` and forgotten when it closes. */
  add(socket: TLSSocket, svid: VerifiedSvid, grants: Grants | undefined): Session {
    const s: Session = { socket, svid, grants, clientId: undefined, timer: undefined };
    const delay = svid.notAfter - this.#clock.now();
    s.timer = this.#clock.setTimer(`session-expiry ${svid.spiffeId}`, Math.max(0, delay), () => {
      this.#logger.info('session closed: certificate expired', {
        spiffeId: svid.spiffeId,
        clientId: s.clientId,
      });
      socket.destroy();
    });
    this.#bySocket.set(socket, s);
    this.#all.add(s);
    socket.once('close', () => {
      s.timer?.cancel();
      this.#all.delete(s);
    });
    return s;
  }

  of(conn: object): Session | undefined {
    return this.#bySocket.get(conn);
  }

  /** Live sessions whose identity, CA or serials are named; used for revocation. */
  matching(spiffeIds: ReadonlySet<string>, serials: ReadonlySet<string>): Session[] {
    return [...this.#all].filter(
      (s) =>
        spiffeIds.has(s.svid.spiffeId) ||
        s.svid.caIds.some((id) => spiffeIds.has(id)) ||
        s.svid.serials.some((x) => serials.has(x)),
    );
  }

  /** Authenticated sessions of one identity, by MQTT client id. */
  clientIdsOf(spiffeId: string): Set<string> {
    const out = new Set<string>();
    for (const s of this.#all)
      if (s.svid.spiffeId === spiffeId && s.clientId !== undefined) out.add(s.clientId);
    return out;
  }

  get size(): number {
    return this.#all.size;
  }

  all(): readonly Session[] {
    return [...this.#all];
  }

  closeAll(): void {
    for (const s of this.#all) {
      s.timer?.cancel();
      s.socket.destroy();
    }
  }
}
