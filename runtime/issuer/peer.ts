/**
 * The gateway behind an mTLS request (renewal, firmware staging, the offline device-issuance
 * log): its TLS client certificate must be a current, unrevoked gateway SVID that this issuer
 * signed and recorded, of a gateway that is neither disabled nor revoked.
 */
import { X509Certificate } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import { parseCertificate } from '../svid/certificate.ts';
import type { AuditInfo, IssuerCore, RequestContext } from './core.ts';
import { type GatewayRecord, type IssuedRecord, K } from './records.ts';

export async function authenticatePeer(
  core: IssuerCore,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<GatewayRecord> {
  const deny = (why: string): IssuerError =>
    new IssuerError('ERR_ISSUER_CLIENT_CERT', `this request needs the gateway SVID: ${why}`);
  if (ctx.peerCertificate === undefined || ctx.peerCertificate.length === 0)
    throw deny('no client certificate');
  let cert: X509Certificate;
  let parts: ReturnType<typeof parseCertificate>;
  try {
    cert = new X509Certificate(Buffer.from(ctx.peerCertificate));
    parts = parseCertificate(ctx.peerCertificate);
  } catch {
    throw deny('client certificate does not parse');
  }
  if (!core.roots().some((r) => cert.checkIssued(r) && cert.verify(r.publicKey)))
    throw deny('not signed by this issuer');
  const now = core.clock.now();
  if (now < parts.notBefore || now >= parts.notAfter) throw deny('expired or not yet valid');
  if (cert.ca || parts.uris.length !== 1) throw deny('not an X.509-SVID');
  const spiffeId = parts.uris[0] as string;
  info.spiffeId = spiffeId;
  const issued = await core.store.get<IssuedRecord>(K.issued(parts.serialHex));
  if (issued === undefined || issued.kind !== 'svid' || issued.spiffeId !== spiffeId)
    throw deny('not a gateway SVID this issuer knows');
  info.gateway = issued.gateway;
  if (core.isRevokedSerial(parts.serialHex) || core.isRevokedId(spiffeId))
    throw new IssuerError('ERR_ISSUER_REVOKED', `${spiffeId} is revoked`);
  const gw = await core.checkGatewayUsable(issued.gateway);
  if (gw === undefined) throw deny('unknown gateway');
  info.method = gw.method;
  return gw;
}
