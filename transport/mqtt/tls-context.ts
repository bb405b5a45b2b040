/**
 * TLS material from the identity sources: one `SecureContext` for the current gateway SVID and
 * bundle, built when they change and swapped into the server with `setSecureContext`, never per
 * connection (STYLE.md §4). The private key is handed to OpenSSL in memory only.
 */
import { constants } from 'node:crypto';
import type { Socket } from 'node:net';
import { createSecureContext, type SecureContext, type Server } from 'node:tls';
import type { Clock } from '../../runtime/core/clock.ts';
import type { X509Bundle, X509Svid } from '../../runtime/sources/types.ts';

export interface ContextMaterial {
  readonly key: string;
  readonly cert: string;
  readonly ca: string;
}

/**
 * Context options of the main listener besides the material. `SSL_OP_NO_TICKET`: no stateless
 * session tickets (TLS 1.3 then sends stateful ones, which Node's server never stores, so nothing
 * resumes). A session resumed from a ticket would carry the peer's leaf but not its chain (the
 * DER form of an SSL_SESSION has no chain), so the SPIFFE check of a delegated-CA device could
 * not pass on it anyway; building and encrypting the tickets cost CPU and memory per handshake
 * (measured with `npm run bench broker`).
 */
export const SERVER_TLS_OPTIONS = {
  minVersion: 'TLSv1.2',
  secureOptions: constants.SSL_OP_NO_TICKET,
} as const;

/** Key and chain of an SVID (or of a device's stored identity) and the roots to trust. */
type Identity = Pick<X509Svid, 'privateKey' | 'chain'>;
type Roots = Pick<X509Bundle, 'roots'>;

export function materialFor(svid: Identity, bundle: Roots): ContextMaterial {
  return {
    key: svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    cert: svid.chain.map((c) => c.toString()).join(''),
    ca: bundle.roots.map((c) => c.toString()).join(''),
  };
}

/** A client's context (the device SDK builds one per identity or bundle change). */
export function contextFor(svid: Identity, bundle: Roots): SecureContext {
  return createSecureContext({ ...materialFor(svid, bundle), minVersion: 'TLSv1.2' });
}

/**
 * Refuses each TCP connection, before its handshake, while the certificate `server` presents is
 * past `servedUntil()` (epoch ms on `clock`; `-Infinity` when the source has none valid): a
 * listener never presents an expired gateway SVID, and serves again as soon as a rotation moves
 * `servedUntil`. TLS keeps the context it was given, so this is the listener's only expiry check.
 */
export function refuseWhileExpired(
  server: Server,
  clock: Clock,
  servedUntil: () => number,
  onRefuse: (remote: string | undefined) => void,
): void {
  server.on('connection', (socket: Socket) => {
    if (clock.now() < servedUntil()) return;
    onRefuse(socket.remoteAddress);
    socket.destroy();
  });
}
