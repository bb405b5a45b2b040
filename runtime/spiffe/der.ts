/**
 * A minimal DER reader (X.690) for what SPIFFE verification needs from a certificate: the
 * extensions of the TBSCertificate (RFC 5280 §4.1) and the few extension values it checks. It
 * reads only definite lengths, never recurses without bound, and throws a `RangeError` on any
 * malformed input (callers turn that into a typed error). It exists so that the broker's
 * handshake path does not load or run a general ASN.1 library.
 */

export interface Tlv {
  readonly tag: number;
  /** First byte of the value. */
  readonly start: number;
  /** One past the last byte of the value. */
  readonly end: number;
}

export function readTlv(buf: Uint8Array, off: number, limit = buf.length): Tlv {
  if (off + 2 > limit) throw new RangeError('DER: truncated header');
  const tag = buf[off] as number;
  if ((tag & 0x1f) === 0x1f) throw new RangeError('DER: multi-byte tags are not used here');
  let len = buf[off + 1] as number;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new RangeError('DER: bad length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] as number);
    start += n;
  }
  if (start + len > limit) throw new RangeError('DER: value past its container');
  return { tag, start, end: start + len };
}

/** The TLVs directly inside a constructed value. */
export function children(buf: Uint8Array, tlv: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let off = tlv.start; off < tlv.end; ) {
    const c = readTlv(buf, off, tlv.end);
    out.push(c);
    off = c.end;
    if (out.length > 1024) throw new RangeError('DER: too many elements');
  }
  return out;
}

export function oid(buf: Uint8Array, tlv: Tlv): string {
  if (tlv.tag !== 0x06 || tlv.end === tlv.start) throw new RangeError('DER: not an OID');
  const first = buf[tlv.start] as number;
  const parts: number[] = [
    Math.min(2, Math.floor(first / 40)),
    first - Math.min(2, Math.floor(first / 40)) * 40,
  ];
  let v = 0;
  for (let i = tlv.start + 1; i < tlv.end; i++) {
    const b = buf[i] as number;
    v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

export interface RawExtension {
  readonly id: string;
  readonly critical: boolean;
  /** The extnValue contents (the DER of the extension's own value). */
  readonly value: Uint8Array;
}

/** The extensions of a certificate (DER); duplicate extensions are refused (RFC 5280 §4.2). */
export function certificateExtensions(der: Uint8Array): RawExtension[] {
  const cert = readTlv(der, 0);
  if (cert.tag !== 0x30) throw new RangeError('DER: certificate is not a SEQUENCE');
  const tbs = children(der, cert)[0];
  if (tbs === undefined || tbs.tag !== 0x30) throw new RangeError('DER: no TBSCertificate');
  const ext = children(der, tbs).find((t) => t.tag === 0xa3);
  if (ext === undefined) return [];
  const seq = children(der, ext)[0];
  if (seq === undefined || seq.tag !== 0x30) throw new RangeError('DER: extensions are not a SEQUENCE');
  const out: RawExtension[] = [];
  const seen = new Set<string>();
  for (const e of children(der, seq)) {
    const parts = children(der, e);
    const id = oid(der, parts[0] as Tlv);
    if (seen.has(id)) throw new RangeError(`DER: duplicate extension ${id}`);
    seen.add(id);
    let i = 1;
    let critical = false;
    if (parts[i]?.tag === 0x01) {
      critical = der[(parts[i] as Tlv).start] !== 0;
      i++;
    }
    const v = parts[i];
    if (v === undefined || v.tag !== 0x04) throw new RangeError('DER: extension without a value');
    out.push({ id, critical, value: der.subarray(v.start, v.end) });
  }
  return out;
}

/** BasicConstraints (RFC 5280 §4.2.1.9). */
export function basicConstraints(v: Uint8Array): { ca: boolean; pathLength: number | undefined } {
  const seq = readTlv(v, 0);
  let ca = false;
  let pathLength: number | undefined;
  for (const c of children(v, seq)) {
    if (c.tag === 0x01) ca = v[c.start] !== 0;
    else if (c.tag === 0x02) {
      if (c.end - c.start > 4) throw new RangeError('DER: pathLen too large');
      pathLength = 0;
      for (let i = c.start; i < c.end; i++) pathLength = pathLength * 256 + (v[i] as number);
    }
  }
  return { ca, pathLength };
}

/** KeyUsage bits (RFC 5280 §4.2.1.3): bit i (digitalSignature = 0) → value `1 << i`. */
export function keyUsage(v: Uint8Array): number {
  const bits = readTlv(v, 0);
  if (bits.tag !== 0x03 || bits.end === bits.start)
    throw new RangeError('DER: key usage is not a BIT STRING');
  let flags = 0;
  const bytes = bits.end - bits.start - 1;
  for (let i = 0; i < Math.min(bytes * 8, 9); i++) {
    if (((v[bits.start + 1 + (i >> 3)] as number) >> (7 - (i & 7))) & 1) flags |= 1 << i;
  }
  return flags;
}

/** ExtendedKeyUsage: the purpose OIDs. */
export function extKeyUsage(v: Uint8Array): string[] {
  return children(v, readTlv(v, 0)).map((t) => oid(v, t));
}

/** SubjectAltName: the uniformResourceIdentifier entries and the total number of names. */
export function subjectAltNames(v: Uint8Array): { uris: string[]; count: number } {
  const names = children(v, readTlv(v, 0));
  const uris = names
    .filter((n) => n.tag === 0x86)
    .map((n) => Buffer.from(v.subarray(n.start, n.end)).toString('latin1'));
  return { uris, count: names.length };
}
