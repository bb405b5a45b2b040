/**
 * TLS material from the identity sources: one `SecureContext` for the current gateway SVID and
 * bundle, built when they change and swapped into the server with `setSecureContext`, never per
 * connection (STYLE.md §4). The private key is handed to OpenSSL in memory only.
 */
import { createSecureContext, type SecureContext } from 'node:tls';
import type { X509Bundle, X509Svid } from '../../runtime/sources/types.ts';

export interface ContextMaterial {
  readonly key: string;
  readonly cert: string;
  readonly ca: string;
}

export function materialFor(svid: X509Svid, bundle: X509Bundle): ContextMaterial {
  return {
    key: svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    cert: svid.chain.map((c) => c.toString()).join(''),
    ca: bundle.roots.map((c) => c.toString()).join(''),
  };
}

export function contextFor(svid: X509Svid, bundle: X509Bundle): SecureContext {
  return createSecureContext({ ...materialFor(svid, bundle), minVersion: 'TLSv1.2' });
}
