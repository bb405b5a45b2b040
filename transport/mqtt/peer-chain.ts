/** The certificate chain a TLS peer presented, as DER, leaf first (at most 8 certificates). */
import type { PeerCertificate, TLSSocket } from 'node:tls';

export function peerChainDer(socket: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let cert = socket.getPeerCertificate(true) as PeerCertificate & { issuerCertificate?: PeerCertificate };
  while (cert?.raw !== undefined && out.length < 8) {
    out.push(cert.raw);
    const next = cert.issuerCertificate;
    if (next === undefined || next === cert || next.raw?.equals(cert.raw)) break;
    cert = next;
  }
  return out;
}
