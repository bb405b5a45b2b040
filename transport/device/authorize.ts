/**
 * How a device authorizes the server it connected to, as go-spiffe's `tlsconfig` does it
 * (`tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(gatewayId))`): the peer's
 * chain is verified as an X.509-SVID for server use against the roots the device trusts (with
 * the same path scoping as every edgeward verifier), and then the authorizer looks at the
 * verified SPIFFE ID, parsed with runtime/spiffe/id.ts from the certificate's URI SAN: exactly
 * the expected gateway ID passes, nothing else (not a device of that gateway, not another
 * gateway, not a prefix). The host name plays no part: the gateway is known by its ID.
 *
 * This accepts the gateway SVID the issuer signed and the server certificate a gateway mints
 * under its delegated CA (URI SAN = the gateway's own ID, serverAuth), both of which carry the
 * gateway ID as their one URI SAN.
 *
 * @example
 * ```ts
 * tls.connect({ ..., checkServerIdentity: gatewayAuthorizer(() => ({ gatewayId, trustDomain, roots, now: clock.now() })) });
 * ```
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { parseSpiffeId, type SpiffeId } from '../../runtime/spiffe/id.ts';
import { verifyX509Svid } from '../../runtime/spiffe/verify.ts';
import { TransportError } from '../errors.ts';

/** Authorizes a verified peer ID (go-spiffe's `tlsconfig.Authorizer`); throws to refuse. */
export type Authorizer = (id: SpiffeId) => void;

/** Exactly this SPIFFE ID (go-spiffe's `tlsconfig.AuthorizeID`). */
export function authorizeId(expected: string): Authorizer {
  const want = parseSpiffeId(expected).id;
  return (id) => {
    if (id.id !== want)
      throw new TransportError('ERR_DEVICE_GATEWAY_UNAUTHORIZED', `the server is ${id.id}, not ${want}`);
  };
}

export interface PeerTrust {
  readonly trustDomain: string;
  readonly roots: readonly X509Certificate[];
  readonly now: number;
}

/** The chain as Node hands it to `checkServerIdentity` (`issuerCertificate` links, leaf first). */
export function chainOf(peer: PeerCertificate): X509Certificate[] {
  const out: X509Certificate[] = [];
  let cur: (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined = peer;
  while (cur?.raw !== undefined && out.length < 8) {
    const cert = new X509Certificate(cur.raw);
    if (out.some((c) => c.fingerprint256 === cert.fingerprint256)) break;
    out.push(cert);
    cur = cur.issuerCertificate;
  }
  return out;
}

/** Verify a server's chain as a server SVID and authorize its ID; the error says why not. */
export function authorizeServer(
  chain: readonly X509Certificate[],
  trust: PeerTrust,
  authorize: Authorizer,
): void {
  let spiffeId: string;
  try {
    spiffeId = verifyX509Svid(chain, {
      now: trust.now,
      bundle: { trustDomain: trust.trustDomain, roots: trust.roots, sequence: 0 },
      purpose: 'server',
    }).spiffeId;
  } catch (cause) {
    throw new TransportError(
      'ERR_DEVICE_GATEWAY_UNAUTHORIZED',
      `the server certificate is not a valid SVID of the trust domain: ${(cause as Error).message}`,
      { cause },
    );
  }
  authorize(parseSpiffeId(spiffeId));
}

/**
 * A `checkServerIdentity` for `tls.connect` (it runs after OpenSSL verified the chain against
 * the context's roots, and its error aborts the handshake). `trust` is read at each handshake.
 */
export function gatewayAuthorizer(
  trust: () => PeerTrust,
  authorize: Authorizer,
): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    try {
      authorizeServer(chainOf(cert), trust(), authorize);
      return undefined;
    } catch (err) {
      return err as Error;
    }
  };
}
