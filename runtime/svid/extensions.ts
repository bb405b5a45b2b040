/**
 * Pre-encoded X.509 extensions (RFC 5280 §4.2) for the SVID profiles. Constant extensions are
 * encoded once at load; the per-certificate ones (SAN, SKI, AKI, name constraints) are small
 * writers. X.509-SVID rules (SPIFFE X509-SVID §4, §5): leaf = cA false, critical KU with
 * digitalSignature only, EKU serverAuth+clientAuth, exactly one URI SAN; signing certificate =
 * cA true, critical KU keyCertSign (+cRLSign).
 */
import { createHash } from 'node:crypto';
import { bitString, bool, DerReader, octetString, oid, seq, smallInt, TAG, tlv } from '../spiffe/der.ts';

export const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ecPublicKey: '1.2.840.10045.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecdsaSha256: '1.2.840.10045.4.3.2',
  ecdsaSha384: '1.2.840.10045.4.3.3',
  ecdsaSha512: '1.2.840.10045.4.3.4',
  rsaSha256: '1.2.840.113549.1.1.11',
  rsaSha384: '1.2.840.113549.1.1.12',
  rsaSha512: '1.2.840.113549.1.1.13',
} as const;

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }. */
export function extension(id: string, critical: boolean, value: Uint8Array): Buffer {
  return critical ? seq(oid(id), bool(true), octetString(value)) : seq(oid(id), octetString(value));
}

/** §4.2.1.9 basicConstraints, always critical here. */
export const basicConstraints = (ca: boolean, pathLen?: number): Buffer =>
  extension(
    OID.basicConstraints,
    true,
    ca ? seq(bool(true), ...(pathLen === undefined ? [] : [smallInt(pathLen)])) : seq(),
  );

/** §4.2.1.3 keyUsage bits: digitalSignature(0), keyEncipherment(2), keyCertSign(5), cRLSign(6). */
export function keyUsage(bits: readonly number[]): Buffer {
  let v = 0;
  for (const b of bits) v |= 0x80 >> b;
  const highest = Math.max(...bits);
  return extension(OID.keyUsage, true, bitString(Buffer.from([v]), 7 - highest));
}

/** §4.2.1.12 extKeyUsage. */
export const extKeyUsage = (...ids: string[]): Buffer =>
  extension(OID.extKeyUsage, false, seq(...ids.map(oid)));

export type GeneralName = { uri: string } | { dns: string } | { ip: Uint8Array };

function generalName(n: GeneralName): Buffer {
  if ('uri' in n) return tlv(0x86, Buffer.from(n.uri, 'ascii'));
  if ('dns' in n) return tlv(0x82, Buffer.from(n.dns, 'ascii'));
  return tlv(0x87, n.ip);
}

/** §4.2.1.6 subjectAltName; non-critical (the subject is not empty). */
export const subjectAltName = (...names: GeneralName[]): Buffer =>
  extension(OID.subjectAltName, false, seq(...names.map(generalName)));

/** §4.2.1.6 subjectAltName, critical: for a certificate whose subject is empty. */
export const criticalSubjectAltName = (...names: GeneralName[]): Buffer =>
  extension(OID.subjectAltName, true, seq(...names.map(generalName)));

/**
 * §4.2.1.10 nameConstraints with one permitted URI subtree. For URIs the constraint applies to
 * the host part: `fleet.example` permits exactly the host `fleet.example`, which is the trust
 * domain of every `spiffe://fleet.example/...` ID (a leading period would permit only
 * subdomains, and so refuse the trust domain itself).
 */
export const permittedUriHost = (host: string): Buffer => nameConstraints([{ uri: host }], []);

/**
 * §4.2.1.10 nameConstraints, critical: GeneralSubtrees of permitted and excluded names (each a
 * GeneralSubtree with only its base). An `ip` base is address ‖ mask (8 bytes for IPv4, 32 for
 * IPv6); an empty `dns` base matches every DNS name (so excluding it forbids them all).
 */
export function nameConstraints(permitted: readonly GeneralName[], excluded: readonly GeneralName[]): Buffer {
  const subtrees = (tag: number, names: readonly GeneralName[]): Buffer[] =>
    names.length === 0 ? [] : [tlv(tag, ...names.map((n) => seq(generalName(n))))];
  return extension(OID.nameConstraints, true, seq(...subtrees(0xa0, permitted), ...subtrees(0xa1, excluded)));
}

/** §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value. */
export function keyIdentifier(spkiDer: Uint8Array): Buffer {
  const r = new DerReader(spkiDer, 'SubjectPublicKeyInfo');
  const inner = new DerReader(r.read(TAG.SEQUENCE, 'SubjectPublicKeyInfo').content, 'SubjectPublicKeyInfo');
  inner.read(TAG.SEQUENCE, 'algorithm');
  const bits = inner.read(TAG.BIT_STRING, 'subjectPublicKey').content;
  return createHash('sha1').update(bits.subarray(1)).digest();
}

export const subjectKeyId = (ski: Uint8Array): Buffer =>
  extension(OID.subjectKeyIdentifier, false, octetString(ski));

export const authorityKeyId = (ski: Uint8Array): Buffer =>
  extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, ski)));

/** A Name of one CN (and optionally an O) RDN, UTF8String. */
export function name(cn: string, organization?: string): Buffer {
  const rdn = (id: string, v: string): Buffer =>
    tlv(TAG.SET, seq(oid(id), tlv(TAG.UTF8_STRING, Buffer.from(v))));
  return organization === undefined
    ? seq(rdn(OID.commonName, cn))
    : seq(rdn(OID.organization, organization), rdn(OID.commonName, cn));
}
