/**
 * Reading the parts of an X.509 certificate (RFC 5280 §4.1) that the signer and the issuer
 * need and that `node:crypto`'s X509Certificate does not expose as bytes: the raw subject
 * Name, the SubjectPublicKeyInfo, the validity as epoch ms, the SKI, and URI SANs.
 *
 * @example
 * ```ts
 * const parts = parseCertificate(der);
 * parts.subjectDer; parts.notAfter; parts.subjectKeyId;
 * ```
 */
import { X509Certificate } from 'node:crypto';
import { SvidError } from '../errors.ts';
import { normalizeSerial } from '../spiffe/cert-facts.ts';
import { DerReader, oidText, parseTime, TAG, type Tlv } from '../spiffe/der.ts';
import { OID } from './extensions.ts';

export interface CertificateParts {
  readonly tbs: Buffer;
  readonly serialHex: string;
  readonly issuerDer: Buffer;
  readonly subjectDer: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly spki: Buffer;
  /** Extension OID → { critical, value }. */
  readonly extensions: ReadonlyMap<string, { critical: boolean; value: Buffer }>;
  readonly subjectKeyId: Buffer | undefined;
  readonly uris: readonly string[];
}

/** Parse certificate DER; throws `ERR_DER_MALFORMED` for anything that is not a certificate. */
export function parseCertificate(der: Uint8Array): CertificateParts {
  const outer = new DerReader(der, 'certificate');
  const cert = new DerReader(outer.read(TAG.SEQUENCE, 'Certificate').content, 'certificate');
  outer.end('Certificate');
  const tbsTlv = cert.read(TAG.SEQUENCE, 'tbsCertificate');
  const r = new DerReader(tbsTlv.content, 'tbsCertificate');
  r.optional(0xa0, 'version');
  const serial = r.read(TAG.INTEGER, 'serialNumber').content;
  r.read(TAG.SEQUENCE, 'signature');
  const issuer = r.read(TAG.SEQUENCE, 'issuer');
  const validity = new DerReader(r.read(TAG.SEQUENCE, 'validity').content, 'validity');
  const notBefore = parseTime(validity.read(undefined, 'notBefore'), 'notBefore');
  const notAfter = parseTime(validity.read(undefined, 'notAfter'), 'notAfter');
  const subject = r.read(TAG.SEQUENCE, 'subject');
  const spki = r.read(TAG.SEQUENCE, 'subjectPublicKeyInfo');
  r.optional(0x81, 'issuerUniqueID');
  r.optional(0x82, 'subjectUniqueID');
  const exts = new Map<string, { critical: boolean; value: Buffer }>();
  const extsTlv = r.optional(0xa3, 'extensions');
  if (extsTlv !== undefined) {
    const list = new DerReader(
      new DerReader(extsTlv.content).read(TAG.SEQUENCE, 'Extensions').content,
      'extensions',
    );
    while (!list.done) {
      const e = new DerReader(list.read(TAG.SEQUENCE, 'Extension').content, 'extension');
      const id = oidText(e.read(TAG.OID, 'extnID').content);
      const crit = e.optional(TAG.BOOLEAN, 'critical');
      const value = e.read(TAG.OCTET_STRING, 'extnValue').content;
      if (exts.has(id))
        throw new SvidError('ERR_DER_MALFORMED', `certificate: extension ${id} appears twice`);
      exts.set(id, { critical: crit !== undefined && crit.content[0] !== 0, value });
    }
  }
  const skiExt = exts.get(OID.subjectKeyIdentifier);
  const ski =
    skiExt === undefined ? undefined : new DerReader(skiExt.value).read(TAG.OCTET_STRING, 'SKI').content;
  const sanExt = exts.get(OID.subjectAltName);
  const uris: string[] = [];
  if (sanExt !== undefined) {
    const names = new DerReader(
      new DerReader(sanExt.value, 'SAN').read(TAG.SEQUENCE, 'GeneralNames').content,
      'SAN',
    );
    while (!names.done) {
      const n: Tlv = names.read(undefined, 'GeneralName');
      if (n.tag === 0x86) uris.push(n.content.toString('latin1'));
    }
  }
  return {
    tbs: tbsTlv.raw,
    serialHex: serialHex(serial),
    issuerDer: issuer.raw,
    subjectDer: subject.raw,
    notBefore,
    notAfter,
    spki: spki.raw,
    extensions: exts,
    subjectKeyId: ski,
    uris,
  };
}

/** Serial as lowercase hex without leading zeros (the form revocations use). */
export function serialHex(content: Uint8Array): string {
  return normalizeSerial(Buffer.from(content).toString('hex'));
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate block of a PEM text, in order (other blocks are skipped); throws when one does not parse. */
export function pemCertificates(text: string): X509Certificate[] {
  return (text.match(PEM_CERTIFICATE) ?? []).map((b) => new X509Certificate(b));
}
