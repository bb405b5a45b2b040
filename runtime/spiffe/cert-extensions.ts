/**
 * Reading the extensions of a certificate (RFC 5280 §4.1, §4.2) on the broker's handshake path:
 * the raw extension list of the TBSCertificate and decoders for the few values SPIFFE
 * verification checks. Built on the in-place `Span` reader of `der.ts` (no copies, no general
 * ASN.1 library); anything that is not DER, or not the expected structure, is
 * `ERR_DER_MALFORMED` (`cert-facts.ts` turns it into `ERR_SVID_INVALID`).
 *
 * @example
 * ```ts
 * const exts = certificateExtensions(cert.raw);
 * const san = exts.find((e) => e.id === '2.5.29.17');
 * if (san !== undefined) subjectAltNames(san.value).uris;
 * ```
 */
import { children, derMalformed, readSpan, type Span, spanOid, TAG } from './der.ts';

export interface RawExtension {
  readonly id: string;
  readonly critical: boolean;
  /** The extnValue contents (the DER of the extension's own value). */
  readonly value: Uint8Array;
}

const W = 'certificate extensions';

/** The extensions of a certificate (DER); duplicate extensions are refused (RFC 5280 §4.2). */
export function certificateExtensions(der: Uint8Array): RawExtension[] {
  const cert = readSpan(der, 0, der.length, W, 'Certificate');
  if (cert.tag !== TAG.SEQUENCE) throw derMalformed(W, 'certificate is not a SEQUENCE');
  // OpenSSL has parsed the whole certificate already: read only as far as the extensions.
  if (cert.end === cert.start) throw derMalformed(W, 'no TBSCertificate');
  const tbs = readSpan(der, cert.start, cert.end, W, 'TBSCertificate');
  if (tbs.tag !== TAG.SEQUENCE) throw derMalformed(W, 'no TBSCertificate');
  let ext: Span | undefined;
  for (let off = tbs.start; ext === undefined && off < tbs.end; ) {
    const t = readSpan(der, off, tbs.end, W, 'TBSCertificate element');
    if (t.tag === 0xa3) ext = t;
    off = t.end;
  }
  if (ext === undefined) return [];
  const seq = children(der, ext, W)[0];
  if (seq === undefined || seq.tag !== TAG.SEQUENCE) throw derMalformed(W, 'extensions are not a SEQUENCE');
  const out: RawExtension[] = [];
  const seen = new Set<string>();
  for (const e of children(der, seq, W)) {
    const parts = children(der, e, W);
    const id = spanOid(der, parts[0] as Span, W);
    if (seen.has(id)) throw derMalformed(W, `duplicate extension ${id}`);
    seen.add(id);
    let i = 1;
    let critical = false;
    if (parts[i]?.tag === TAG.BOOLEAN) {
      critical = der[(parts[i] as Span).start] !== 0;
      i++;
    }
    const v = parts[i];
    if (v === undefined || v.tag !== TAG.OCTET_STRING) throw derMalformed(W, 'extension without a value');
    out.push({ id, critical, value: der.subarray(v.start, v.end) });
  }
  return out;
}

/** BasicConstraints (RFC 5280 §4.2.1.9). */
export function basicConstraints(v: Uint8Array): { ca: boolean; pathLength: number | undefined } {
  const seq = readSpan(v, 0, v.length, 'basicConstraints', 'BasicConstraints');
  let ca = false;
  let pathLength: number | undefined;
  for (const c of children(v, seq, 'basicConstraints')) {
    if (c.tag === TAG.BOOLEAN) ca = v[c.start] !== 0;
    else if (c.tag === TAG.INTEGER) {
      if (c.end - c.start > 4) throw derMalformed('basicConstraints', 'pathLen too large');
      pathLength = 0;
      for (let i = c.start; i < c.end; i++) pathLength = pathLength * 256 + (v[i] as number);
    }
  }
  return { ca, pathLength };
}

/** KeyUsage bits (RFC 5280 §4.2.1.3): bit i (digitalSignature = 0) → value `1 << i`. */
export function keyUsage(v: Uint8Array): number {
  const bits = readSpan(v, 0, v.length, 'keyUsage', 'KeyUsage');
  if (bits.tag !== TAG.BIT_STRING || bits.end === bits.start)
    throw derMalformed('keyUsage', 'not a BIT STRING');
  let flags = 0;
  const bytes = bits.end - bits.start - 1;
  for (let i = 0; i < Math.min(bytes * 8, 9); i++) {
    if (((v[bits.start + 1 + (i >> 3)] as number) >> (7 - (i & 7))) & 1) flags |= 1 << i;
  }
  return flags;
}

/** ExtendedKeyUsage (RFC 5280 §4.2.1.12): the purpose OIDs. */
export function extKeyUsage(v: Uint8Array): string[] {
  return children(v, readSpan(v, 0, v.length, 'extKeyUsage', 'ExtKeyUsageSyntax'), 'extKeyUsage').map((t) =>
    spanOid(v, t, 'extKeyUsage'),
  );
}

/** SubjectAltName (RFC 5280 §4.2.1.6): the uniformResourceIdentifier entries and the total number of names. */
export function subjectAltNames(v: Uint8Array): { uris: string[]; count: number } {
  const names = children(v, readSpan(v, 0, v.length, 'subjectAltName', 'GeneralNames'), 'subjectAltName');
  const uris = names
    .filter((n) => n.tag === 0x86)
    .map((n) => Buffer.from(v.subarray(n.start, n.end)).toString('latin1'));
  return { uris, count: names.length };
}
