/**
 * The live sessions of the main listener: one per TLS socket whose peer chain verified. Each is
 * closed at the chain's earliest NotAfter (TLS never re-checks a certificate after the
 * handshake) by one shared `ExpiryQueue` on the injected Clock, and is found by SPIFFE ID and by
 * serial when the revocation source reports something, so that session is closed at once.
 *
 * A session keeps only what those checks need (ID, NotAfter, serials, CA IDs), never the
 * certificate objects: they hold native OpenSSL memory for as long as the device stays connected.
 */
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../../runtime/core/clock.ts';
import type { Logger } from '../../runtime/core/logger.ts';
import type { VerifiedSvid } from '../../runtime/spiffe/verify.ts';
import type { Grants } from '../policy/grants.ts';
import { type ExpiryEntry, ExpiryQueue } from './expiry.ts';

/** What a session remembers of its verified SVID. */
export type SessionIdentity = Pick<VerifiedSvid, 'spiffeId' | 'notAfter' | 'serials' | 'caIds'>;

export interface Session extends ExpiryEntry {
  readonly socket: TLSSocket;
  readonly svid: SessionIdentity;
  /** undefined when no policy rule matches: CONNECT is then refused with CONNACK 5. */
  grants: Grants | undefined;
  /** The MQTT client id once CONNECT was accepted. */
  clientId: string | undefined;
  /** The CONNECT packet's own fields, recorded by `preConnect` for `authenticate` (then cleared). */
  connect: ConnectRecord | undefined;
  /** The aedes client once the socket is handed to aedes (its `will` is cleared on revocation). */
  mqtt: { will: unknown; _will?: unknown; readonly id: string } | undefined;
  /** CleanSession of the accepted CONNECT. */
  clean: boolean;
}

/** What `authenticate` needs of the CONNECT packet (aedes replaces an empty client id before it). */
export interface ConnectRecord {
  readonly clientId: string;
  readonly clean: boolean;
  readonly keepalive: number;
  /** The will's topic and retain flag, when the CONNECT has one. */
  readonly will: { readonly topic: string; readonly retain: boolean } | undefined;
}

export class Sessions {
  readonly #bySocket = new WeakMap<object, Session>();
  readonly #all = new Set<Session>();
  /** Sessions by SPIFFE ID, for the per-identity connection cap at each CONNECT. */
  readonly #byId = new Map<string, Session[]>();
  readonly #expiry: ExpiryQueue<Session>;
  /**
   * The identity that last held each MQTT client id since start (a persistent session outlives
   * its connection): a client id is only ever taken over by the same SPIFFE ID.
   */
  readonly #owners = new Map<string, string>();
  readonly #onClose: (this: TLSSocket) => void;

  constructor(clock: Clock, logger: Logger) {
    this.#expiry = new ExpiryQueue<Session>(clock, 'session-expiry', (s) => {
      logger.info('session closed: certificate expired', {
        spiffeId: s.svid.spiffeId,
        clientId: s.clientId,
      });
      s.socket.destroy();
    });
    const sessions = this;
    // One listener function for every socket (no closure per connection).
    this.#onClose = function onClose(this: TLSSocket) {
      sessions.#forget(this);
    };
  }

  /** Register a verified socket; it is closed at `svid.notAfter` and forgotten when it closes. */
  add(socket: TLSSocket, svid: SessionIdentity, grants: Grants | undefined): Session {
    const s: Session = {
      socket,
      svid: { spiffeId: svid.spiffeId, notAfter: svid.notAfter, serials: svid.serials, caIds: svid.caIds },
      grants,
      clientId: undefined,
      connect: undefined,
      mqtt: undefined,
      clean: true,
      deadline: svid.notAfter,
      heapIndex: -1,
    };
    this.#bySocket.set(socket, s);
    this.#all.add(s);
    const same = this.#byId.get(s.svid.spiffeId);
    if (same === undefined) this.#byId.set(s.svid.spiffeId, [s]);
    else same.push(s);
    this.#expiry.add(s, svid.notAfter);
    socket.once('close', this.#onClose);
    return s;
  }

  #forget(socket: TLSSocket): void {
    const s = this.#bySocket.get(socket);
    if (s === undefined) return;
    this.#expiry.remove(s);
    this.#all.delete(s);
    const same = this.#byId.get(s.svid.spiffeId);
    if (same === undefined) return;
    const i = same.indexOf(s);
    if (i !== -1) same.splice(i, 1);
    if (same.length === 0) this.#byId.delete(s.svid.spiffeId);
    // A clean session's client id is free again, unless a newer session of the identity took it over.
    const id = s.clientId;
    if (s.clean && id !== undefined && !same.some((o) => o.clientId === id)) this.#owners.delete(id);
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

  /** Client ids held by persistent sessions before a restart (from the journal). */
  seedOwners(owners: ReadonlyMap<string, string>): void {
    for (const [clientId, owner] of owners) this.#owners.set(clientId, owner);
  }

  /** The SPIFFE ID that holds (or last held) `clientId`, if any. */
  ownerOf(clientId: string): string | undefined {
    return this.#owners.get(clientId);
  }

  /** Records that `s` was admitted with `clientId`; a clean session releases the id when it closes. */
  admit(s: Session, clientId: string, clean: boolean): void {
    s.clientId = clientId;
    s.clean = clean;
    this.#owners.set(clientId, s.svid.spiffeId);
  }

  /** Authenticated sessions of one identity, by MQTT client id. */
  clientIdsOf(spiffeId: string): Set<string> {
    const out = new Set<string>();
    for (const s of this.#byId.get(spiffeId) ?? []) if (s.clientId !== undefined) out.add(s.clientId);
    return out;
  }

  get size(): number {
    return this.#all.size;
  }

  all(): readonly Session[] {
    return [...this.#all];
  }

  closeAll(): void {
    this.#expiry.clear();
    for (const s of this.#all) s.socket.destroy();
  }
}
