/**
 * The two encodings EST (RFC 7030) puts on the wire, written and read with the project's DER
 * code (`runtime/spiffe/der.ts`), no ASN.1 library:
 *
 * - a "certs-only" CMS SignedData (RFC 5652 §5, RFC 7030 §4.1.3, "degenerate" PKCS#7): no
 *   signers, no content, only certificates, in the order given (leaf first). The
 *   `certificates` field is an IMPLICIT SET OF, but like OpenSSL (which declares it a SEQUENCE OF
 *   for this reason) the order is kept, not DER-sorted: `openssl pkcs7 -print_certs` then writes
 *   the leaf first, which is what `mosquitto_pub --cert` needs.
 * - base64 bodies (RFC 7030 §4: `Content-Transfer-Encoding: base64`): written as 64-column lines,
 *   LF, with a final newline (GNU `base64 -d`, `openssl base64 -d` and Azure's EST client each
 *   fail on one of the other layouts); read leniently (CRLF, LF or no line breaks at all) but
 *   strictly as base64 (any other character is refused).
 *
 * @example
 * ```ts
 * const body = base64Lines(certsOnly([leafDer, caDer]));   // "MIIC...\n...\n"
 * const ders = parseCertsOnly(decodeBase64Body(body));     // [leafDer, caDer]
 * ```
 */
import { DerReader, explicit, oid, oidText, seq, set, smallInt, TAG } from '../../runtime/spiffe/der.ts';
import { TransportError } from '../errors.ts';

const OID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const OID_DATA = '1.2.840.113549.1.7.1';
/** More certificates than any chain and bundle here: a bigger answer is refused, not read. */
export const MAX_CERTS = 16;

/** A certs-only CMS SignedData (ContentInfo DER) carrying `certs` (DER each) in this order. */
export function certsOnly(certs: readonly Uint8Array[]): Buffer {
  if (certs.length === 0 || certs.length > MAX_CERTS)
    throw new TypeError(`certs-only needs 1..${MAX_CERTS} certificates`);
  const signedData = seq(
    smallInt(1), // version
    set(), // digestAlgorithms: none
    seq(oid(OID_DATA)), // encapContentInfo without eContent
    explicit(0, ...certs), // certificates [0] IMPLICIT CertificateSet
    set(), // signerInfos: none
  );
  return seq(oid(OID_SIGNED_DATA), explicit(0, signedData));
}

const malformed = (why: string): TransportError =>
  new TransportError('ERR_ENROLL_PROTOCOL', `not a certs-only PKCS#7: ${why}`);

/** The certificates (DER, in order) of a certs-only CMS SignedData. Throws `ERR_ENROLL_PROTOCOL`. */
export function parseCertsOnly(der: Uint8Array): Buffer[] {
  try {
    const top = new DerReader(der, 'PKCS#7');
    const ci = new DerReader(top.read(TAG.SEQUENCE, 'ContentInfo').content, 'PKCS#7');
    top.end('ContentInfo');
    if (oidText(ci.read(TAG.OID, 'contentType').content) !== OID_SIGNED_DATA)
      throw malformed('content type is not signedData');
    const wrapped = new DerReader(ci.read(0xa0, 'content').content, 'PKCS#7');
    ci.end('ContentInfo');
    const sd = new DerReader(wrapped.read(TAG.SEQUENCE, 'SignedData').content, 'PKCS#7');
    wrapped.end('content');
    sd.read(TAG.INTEGER, 'version');
    sd.read(TAG.SET, 'digestAlgorithms');
    sd.read(TAG.SEQUENCE, 'encapContentInfo');
    const certSet = sd.optional(0xa0, 'certificates');
    sd.optional(0xa1, 'crls');
    sd.read(TAG.SET, 'signerInfos');
    sd.end('SignedData');
    if (certSet === undefined) throw malformed('no certificates');
    const certs = new DerReader(certSet.content, 'PKCS#7');
    const out: Buffer[] = [];
    while (!certs.done) {
      if (out.length === MAX_CERTS) throw malformed(`more than ${MAX_CERTS} certificates`);
      out.push(Buffer.from(certs.read(TAG.SEQUENCE, 'certificate').raw));
    }
    if (out.length === 0) throw malformed('no certificates');
    return out;
  } catch (err) {
    if (err instanceof TransportError) throw err;
    throw malformed((err as Error).message);
  }
}

/** Base64 in 64-column lines, LF line ends, a final newline. */
export function base64Lines(der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let out = '';
  for (let i = 0; i < b64.length; i += 64) out += `${b64.slice(i, i + 64)}\n`;
  return out;
}

/**
 * Decode a base64 body: whitespace (CR, LF, spaces, tabs) anywhere is ignored; anything else
 * that is not base64 (the standard alphabet, `=` padding at the end only) is refused with
 * `ERR_ENROLL_PROTOCOL`, as is an empty body.
 */
export function decodeBase64Body(text: string | Uint8Array): Buffer {
  const s = (typeof text === 'string' ? text : Buffer.from(text).toString('latin1')).replace(
    /[\r\n\t ]/g,
    '',
  );
  if (s.length === 0 || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(s))
    throw new TransportError('ERR_ENROLL_PROTOCOL', 'body is not base64');
  return Buffer.from(s, 'base64');
}
