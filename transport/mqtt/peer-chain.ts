/**
 * The certificate chain a TLS peer presented, leaf first (at most 8 certificates). `peerChain`
 * follows `X509Certificate.issuerCertificate` from `getPeerX509Certificate()`, which is cheap;
 * `getPeerCertificate(true)` builds a detailed object per certificate and measured about 1 ms
 * per handshake.
 */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';

export function peerChain(socket: TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  let cert = socket.getPeerX509Certificate();
  while (cert !== undefined && out.length < 8) {
    out.push(cert);
    const next: X509Certificate | undefined = cert.issuerCertificate;
    if (next === undefined || next.fingerprint256 === cert.fingerprint256) break;
    cert = next;
  }
  return out;
}
