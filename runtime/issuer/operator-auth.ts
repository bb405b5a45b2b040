/**
 * Who is on the mTLS admin port: the client certificate must be an operator certificate this
 * issuer signed (`operator.ts`): chained to one of its CAs, valid now, not a CA, exactly one URI
 * SAN `spiffe://<td>/operator/<name>`, serial and ID not revoked. A gateway SVID, a device
 * certificate, anything else: ERR_ISSUER_ADMIN_FORBIDDEN.
 */
import { X509Certificate } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import { isPathSegment } from '../spiffe/id.ts';
import { parseCertificate } from '../svid/certificate.ts';
import type { IssuerCore } from './core.ts';

/** The operator's SPIFFE ID. */
export function authenticateOperator(core: IssuerCore, der: Uint8Array | undefined): string {
  const deny = (why: string): IssuerError =>
    new IssuerError('ERR_ISSUER_ADMIN_FORBIDDEN', `the admin port needs an operator certificate: ${why}`);
  if (der === undefined || der.length === 0) throw deny('no client certificate');
  let cert: X509Certificate;
  let parts: ReturnType<typeof parseCertificate>;
  try {
    cert = new X509Certificate(Buffer.from(der));
    parts = parseCertificate(der);
  } catch {
    throw deny('client certificate does not parse');
  }
  if (!core.roots().some((r) => cert.checkIssued(r) && cert.verify(r.publicKey)))
    throw deny('not signed by this issuer');
  const now = core.clock.now();
  if (now < parts.notBefore || now > parts.notAfter) throw deny('expired or not yet valid');
  if (cert.ca || parts.uris.length !== 1) throw deny('not an X.509-SVID');
  const id = parts.uris[0] as string;
  const prefix = `spiffe://${core.trustDomain}/operator/`;
  const name = id.startsWith(prefix) ? id.slice(prefix.length) : '';
  if (!isPathSegment(name)) throw deny(`${id.slice(0, 200)} is not an operator of ${core.trustDomain}`);
  if (core.isRevokedSerial(parts.serialHex) || core.isRevokedId(id)) throw deny(`${id} is revoked`);
  return id;
}
