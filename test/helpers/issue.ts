/**
 * TEST ONLY: the test PKI's certificate builder on @peculiar/x509 (STYLE.md rule 12), kept apart
 * from the product's DER-template signer in runtime/svid so tests can also build what the product
 * never would (the broken variants).
 *
 * Building X.509-SVIDs and delegated CAs that follow the rules `verify.ts` checks: one URI SAN,
 * cA false, critical key usage digitalSignature, EKU serverAuth+clientAuth, NotAfter clamped to
 * the issuer's, and the SPIFFE ID's last segment as CN (so mosquitto, which names a client by
 * its CN, sees the device id). A delegated CA gets pathLen 0, its gateway's SPIFFE ID as URI SAN
 * and a URI name constraint on the trust domain.
 *
 * Used by the device signer (enrollment and renewal) and by the test PKI. Keys are WebCrypto
 * ECDSA P-256; `toSigningKey` converts a `node:crypto` KeyObject.
 *
 * @example
 * ```ts
 * const der = await issueSvid({ spiffeId, publicKeySpki, issuer: caCert, issuerKey, notBefore, notAfter, serial });
 * ```
 */
import 'reflect-metadata';
import { type KeyObject, webcrypto, type X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { OID_CLIENT_AUTH, OID_SERVER_AUTH } from '../../runtime/spiffe/cert-facts.ts';
import { parseSpiffeId } from '../../runtime/spiffe/id.ts';

x509.cryptoProvider.set(webcrypto as never);

export const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface IssueOptions {
  readonly spiffeId: string;
  /** SubjectPublicKeyInfo DER of the subject's key. */
  readonly publicKeySpki: Uint8Array;
  /** The issuing CA; NotAfter is clamped to its NotAfter. Omit for a self-signed root. */
  readonly issuer?: X509Certificate | undefined;
  readonly issuerKey: webcrypto.CryptoKey;
  readonly notBefore: number;
  readonly notAfter: number;
  /** Serial as hex (positive; callers take it from their injected Random). */
  readonly serialHex: string;
}

/** Convert a `node:crypto` private KeyObject (EC P-256) to a WebCrypto signing key. */
export async function toSigningKey(key: KeyObject): Promise<webcrypto.CryptoKey> {
  const pkcs8 = key.export({ format: 'der', type: 'pkcs8' });
  return webcrypto.subtle.importKey('pkcs8', pkcs8, ECDSA_P256, false, [
    'sign',
  ]) as Promise<webcrypto.CryptoKey>;
}

function lastSegment(id: string): string {
  const p = parseSpiffeId(id);
  return p.segments[p.segments.length - 1] ?? p.trustDomain;
}

function base(o: IssueOptions) {
  const notAfter = o.issuer === undefined ? o.notAfter : Math.min(o.notAfter, Date.parse(o.issuer.validTo));
  const subject = `CN=${lastSegment(o.spiffeId)}`;
  return {
    serialNumber: o.serialHex,
    subject,
    issuer: o.issuer === undefined ? subject : new x509.X509Certificate(o.issuer.raw).subjectName,
    notBefore: new Date(o.notBefore),
    notAfter: new Date(notAfter),
    publicKey: o.publicKeySpki,
    signingKey: o.issuerKey,
    signingAlgorithm: ECDSA_P256,
  };
}

/** An X.509-SVID leaf, DER. */
export async function issueSvid(o: IssueOptions): Promise<Uint8Array> {
  const cert = await x509.X509CertificateGenerator.create({
    ...base(o),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature |
          x509.KeyUsageFlags.keyEncipherment |
          x509.KeyUsageFlags.keyAgreement,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([OID_SERVER_AUTH, OID_CLIENT_AUTH], false),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: o.spiffeId }], false),
    ],
  });
  return new Uint8Array(cert.rawData);
}

/** A CA: a trust-domain root (self-signed, no issuer) or a gateway's delegated device CA. */
export async function issueCa(
  o: IssueOptions & { pathLength?: number; nameConstraint?: string },
): Promise<Uint8Array> {
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, o.pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    new x509.SubjectAlternativeNameExtension([{ type: 'url', value: o.spiffeId }], false),
  ];
  if (o.nameConstraint !== undefined) extensions.push(uriNameConstraint(o.nameConstraint));
  const cert = await x509.X509CertificateGenerator.create({ ...base(o), extensions });
  return new Uint8Array(cert.rawData);
}

/** NameConstraints with one permitted uniformResourceIdentifier subtree (RFC 5280 §4.2.1.10). */
export function uriNameConstraint(host: string): x509.Extension {
  const tlv = (tag: number, body: Buffer): Buffer => {
    if (body.length > 0xffff) throw new RangeError('name constraint too long');
    const len =
      body.length < 0x80
        ? Buffer.from([body.length])
        : body.length < 0x100
          ? Buffer.from([0x81, body.length])
          : Buffer.from([0x82, body.length >> 8, body.length & 0xff]);
    return Buffer.concat([Buffer.from([tag]), len, body]);
  };
  const der = tlv(0x30, tlv(0xa0, tlv(0x30, tlv(0x86, Buffer.from(host, 'latin1')))));
  return new x509.Extension('2.5.29.30', true, der);
}
