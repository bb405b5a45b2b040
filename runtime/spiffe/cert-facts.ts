/**
 * The facts of one certificate that SPIFFE verification needs, read once: URI SANs, cA and
 * pathLen, key usage (and whether it is critical), extended key usage, URI name constraints,
 * validity and serial. Extensions are read in place by `cert-extensions.ts` over the project's
 * DER reader (`der.ts`; no general ASN.1 library on the handshake path); signatures and validity
 * use `node:crypto`.
 *
 * @example
 * ```ts
 * const facts = certFacts(new X509Certificate(der));
 * facts.uris;           // ['spiffe://fleet.example/gateway/gw-1/device/s1']
 * ```
 */
import type { X509Certificate } from 'node:crypto';
import { SpiffeError } from '../errors.ts';
import {
  basicConstraints,
  certificateExtensions,
  extKeyUsage,
  keyUsage,
  subjectAltNames,
} from './cert-extensions.ts';
import { children, derMalformed, readSpan, TAG } from './der.ts';

export const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const OID_NAME_CONSTRAINTS = '2.5.29.30';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';
const OID_EXT_KEY_USAGE = '2.5.29.37';
const OID_SAN = '2.5.29.17';
/** Extensions this verifier understands; any other critical one fails the certificate (RFC 5280 §4.2). */
const KNOWN = new Set([
  '2.5.29.19', // basicConstraints
  '2.5.29.15', // keyUsage
  '2.5.29.37', // extKeyUsage
  '2.5.29.17', // subjectAltName
  OID_NAME_CONSTRAINTS,
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.35', // authorityKeyIdentifier
]);

export interface CertFacts {
  readonly cert: X509Certificate;
  readonly uris: readonly string[];
  /** Number of SAN entries of any type. */
  readonly sanCount: number;
  readonly ca: boolean;
  readonly pathLength: number | undefined;
  /** Key usage bits (RFC 5280 §4.2.1.3), undefined when the extension is absent. */
  readonly keyUsage: number | undefined;
  readonly keyUsageCritical: boolean;
  readonly extKeyUsage: readonly string[] | undefined;
  readonly permittedUris: readonly string[] | undefined;
  readonly excludedUris: readonly string[] | undefined;
  readonly unknownCritical: readonly string[];
  readonly notBefore: number;
  readonly notAfter: number;
  /** Lowercase hex, no leading zeros (as RevocationSource expects). */
  readonly serial: string;
}

export const KU_DIGITAL_SIGNATURE = 1;
export const KU_KEY_CERT_SIGN = 32;
export const KU_CRL_SIGN = 64;

/** Read the facts of `cert`; a certificate whose extensions do not parse is `ERR_SVID_INVALID`. */
export function certFacts(cert: X509Certificate): CertFacts {
  try {
    const exts = certificateExtensions(cert.raw);
    const get = (id: string) => exts.find((e) => e.id === id);
    const bc = get(OID_BASIC_CONSTRAINTS);
    const ku = get(OID_KEY_USAGE);
    const eku = get(OID_EXT_KEY_USAGE);
    const san = get(OID_SAN);
    const nc = get(OID_NAME_CONSTRAINTS);
    const names = san === undefined ? { uris: [], count: 0 } : subjectAltNames(san.value);
    const constraints = nc === undefined ? undefined : parseUriConstraints(nc.value);
    const basic = bc === undefined ? { ca: false, pathLength: undefined } : basicConstraints(bc.value);
    return {
      cert,
      uris: names.uris,
      sanCount: names.count,
      ca: basic.ca,
      pathLength: basic.pathLength,
      keyUsage: ku === undefined ? undefined : keyUsage(ku.value),
      keyUsageCritical: ku?.critical === true,
      extKeyUsage: eku === undefined ? undefined : extKeyUsage(eku.value),
      permittedUris: constraints?.permitted,
      excludedUris: constraints?.excluded,
      unknownCritical: exts.filter((e) => e.critical && !KNOWN.has(e.id)).map((e) => e.id),
      notBefore: Date.parse(cert.validFrom),
      notAfter: Date.parse(cert.validTo),
      serial: normalizeSerial(cert.serialNumber),
    };
  } catch (cause) {
    throw new SpiffeError(
      'ERR_SVID_INVALID',
      `certificate extensions do not parse: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
}

/** `00A1B2` → `a1b2`. */
export function normalizeSerial(hex: string): string {
  const s = hex.toLowerCase().replace(/^0+/, '');
  return s === '' ? '0' : s;
}

/**
 * NameConstraints (RFC 5280 §4.2.1.10): the uniformResourceIdentifier ([6]) bases of the
 * permitted ([0]) and excluded ([1]) subtrees. Other name forms are not used by SPIFFE and are
 * left to the TLS stack.
 */
function parseUriConstraints(der: Uint8Array): { permitted: string[] | undefined; excluded: string[] } {
  const W = 'nameConstraints';
  const outer = readSpan(der, 0, der.length, W, 'NameConstraints');
  if (outer.tag !== TAG.SEQUENCE) throw derMalformed(W, 'not a SEQUENCE');
  let permitted: string[] | undefined;
  const excluded: string[] = [];
  for (const trees of children(der, outer, W)) {
    const list: string[] = [];
    for (const subtree of children(der, trees, W)) {
      const base = readSpan(der, subtree.start, subtree.end, W, 'GeneralSubtree base');
      if (base.tag === 0x86) list.push(Buffer.from(der.subarray(base.start, base.end)).toString('latin1'));
    }
    if (trees.tag === 0xa0) permitted = list;
    else if (trees.tag === 0xa1) excluded.push(...list);
    else throw derMalformed(W, 'neither permitted nor excluded subtrees');
  }
  return { permitted, excluded };
}

/** RFC 5280 §4.2.1.10 URI matching: `.example` matches subdomains, `example` the host exactly. */
export function uriHostMatches(host: string, base: string): boolean {
  const h = host.toLowerCase();
  const b = base.toLowerCase();
  return b.startsWith('.') ? h.endsWith(b) : h === b;
}
