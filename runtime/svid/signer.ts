/**
 * The fast SVID signer shared by the issuer and the agent (which signs device SVIDs with its
 * delegated CA). Everything that is the same for every certificate a CA signs in one profile —
 * version, signature algorithm, issuer Name, AKI, basic constraints, key usage, EKU — is
 * DER-encoded once when the signer is built; each certificate then only encodes serial,
 * validity, subject CN, URI SAN, SPKI and SKI, concatenates, and signs the TBSCertificate with
 * `node:crypto`. No certificate object model on the hot path. `createCaSigner` is the same
 * template signer over the `CaKey` seam (ca-key.ts: software or TPM key; asynchronous signature).
 *
 * Rules enforced here (SPIFFE X509-SVID §4-5, RFC 5280): exactly one URI SAN; subject CN = the
 * SPIFFE ID's last segment (mosquitto's `use_identity_as_username` reads it), except on a leaf
 * whose last segment has a dot: OpenSSL reads such a CN as a host name and checks it against
 * the delegated CA's DNS name constraints (a device `…/device/a.b` then fails to verify), so that
 * leaf has an empty subject and a critical SAN (§4.2.1.6); NotAfter clamped to the signing CA's;
 * the ID must be in the signer's trust domain and under its `scope`.
 *
 * @example
 * ```ts
 * const signer = createSigner({ certificate: caDer, privateKey: caKey, random });
 * const der = signer.sign({ profile: 'svid', spiffeId, spki, notBefore: now, notAfter: now + 3_600_000 });
 * ```
 */
import { createPublicKey, sign as cryptoSign, type KeyObject, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { isEdgewardError } from '../core/error.ts';
import type { Random } from '../core/random.ts';
import { SvidError } from '../errors.ts';
import { bitString, explicit, oid, seq, TAG, time, tlv, uint } from '../spiffe/der.ts';
import { parseSpiffeId, type SpiffeId } from '../spiffe/id.ts';
import type { CaKey } from './ca-key.ts';
import { parseCertificate, serialHex } from './certificate.ts';
import {
  authorityKeyId,
  basicConstraints,
  criticalSubjectAltName,
  extKeyUsage,
  type GeneralName,
  keyIdentifier,
  keyUsage,
  name,
  nameConstraints,
  OID,
  subjectAltName,
  subjectKeyId,
} from './extensions.ts';

/**
 * `svid`: an X.509-SVID leaf (gateway or device). `device-ca`: a delegated CA, pathLen 0.
 * `server`: the gateway's local server certificate under its delegated CA: EKU serverAuth only,
 * for exactly the signer's `serverId` (the CA's own ID), never a client identity.
 */
export type Profile = 'svid' | 'device-ca' | 'server';

export interface SignRequest {
  readonly profile: Profile;
  readonly spiffeId: string;
  /** SubjectPublicKeyInfo DER of the subject's key (from a verified CSR). */
  readonly spki: Uint8Array;
  readonly notBefore: number;
  readonly notAfter: number;
  /** Big-endian serial; default: 16 random bytes, positive. */
  readonly serial?: Uint8Array;
  /**
   * `svid` and `server` only: DNS names and IP addresses the subject serves TLS under (the gateway's broker),
   * added as SANs after the one URI SAN (SPIFFE X509-SVID §2 allows other SAN types). The caller
   * checks them against its policy; here they are only checked to be well formed.
   */
  readonly serverNames?: readonly string[];
  /**
   * `device-ca` only: the DNS names and IP addresses the CA's leaves may carry (the server names
   * the issuer admitted for the gateway), as name constraints besides the URI constraint on the
   * trust domain. DNS names permit themselves and their subdomains (RFC 5280 §4.2.1.10); an IP
   * address permits exactly itself. A family with no name is excluded altogether.
   */
  readonly permittedServerNames?: readonly string[];
}

/** A certificate just signed, with the facts callers record about it (no need to parse it back). */
export interface SignedCertificate {
  readonly der: Buffer;
  /** Lowercase hex without leading zeros, as `parseCertificate` gives it. */
  readonly serialHex: string;
  /** The validity as encoded: clamped to the signing CA's, in whole seconds (epoch ms). */
  readonly notBefore: number;
  readonly notAfter: number;
}

export interface SvidSigner {
  /** The signing CA's certificate (DER) and SPIFFE-relevant facts. */
  readonly certificate: Buffer;
  readonly trustDomain: string;
  readonly notAfter: number;
  /** Sign one certificate; returns its DER. */
  sign(request: SignRequest): Buffer;
  /** Sign one certificate; returns its DER with its serial and validity. */
  issue(request: SignRequest): SignedCertificate;
}

export interface SignerOptions {
  /** The CA certificate (DER) whose key signs. */
  readonly certificate: Uint8Array;
  readonly privateKey: KeyObject;
  readonly trustDomain: string;
  readonly random: Random;
  /** When set, IDs must start with `<scope>/` (the agent: `<gateway ID>/device/`). */
  readonly scope?: string;
  /** Profiles this signer may produce; default `svid` and `device-ca`. A delegated CA signs `svid` and `server`. */
  readonly profiles?: readonly Profile[];
  /** The one ID a `server` certificate may carry (the delegated CA's own ID); required for `server`. */
  readonly serverId?: string;
}

/** TBSCertificate `version [0] EXPLICIT v3`. */
export const VERSION_3 = explicit(0, Buffer.from([TAG.INTEGER, 1, 2]));

const PROFILE_EXTENSIONS: Record<Profile, (td: string) => Buffer[]> = {
  svid: () => [basicConstraints(false), keyUsage([0]), extKeyUsage(OID.serverAuth, OID.clientAuth)],
  // + the per-CA name constraints (`delegatedCaConstraints`)
  'device-ca': () => [basicConstraints(true, 0), keyUsage([5, 6])],
  server: () => [basicConstraints(false), keyUsage([0]), extKeyUsage(OID.serverAuth)],
};

/**
 * The name constraints of a delegated CA (RFC 5280 §4.2.1.10): URI host = the trust domain;
 * DNS and IP permitted exactly for `serverNames`; every DNS name excluded when none is given, and
 * every IPv4 (IPv6) address when no IPv4 (IPv6) address is given, so that no leaf under the CA
 * can carry a host name the issuer did not admit.
 */
export function delegatedCaConstraints(trustDomain: string, serverNames: readonly string[]): Buffer {
  const permitted: GeneralName[] = [{ uri: trustDomain }];
  let dns = false;
  let v4 = false;
  let v6 = false;
  for (const n of serverNames) {
    const g = serverGeneralName(n);
    if ('ip' in g) {
      if (g.ip.length === 4) v4 = true;
      else v6 = true;
      permitted.push({ ip: Buffer.concat([g.ip, Buffer.alloc(g.ip.length, 0xff)]) });
    } else {
      dns = true;
      permitted.push(g);
    }
  }
  const excluded: GeneralName[] = [
    ...(dns ? [] : [{ dns: '' }]),
    ...(v4 ? [] : [{ ip: Buffer.alloc(8) }]),
    ...(v6 ? [] : [{ ip: Buffer.alloc(32) }]),
  ];
  return nameConstraints(permitted, excluded);
}

/** The signature algorithm and hash for a CA key: ECDSA P-256/P-384 or RSA PKCS#1 v1.5. */
export function signatureAlgorithm(key: KeyObject): { algId: Buffer; hash: string } {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return { algId: seq(oid(OID.ecdsaSha256)), hash: 'sha256' };
    if (curve === 'secp384r1') return { algId: seq(oid(OID.ecdsaSha384)), hash: 'sha384' };
  }
  if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048) {
    return { algId: seq(oid(OID.rsaSha256), Buffer.from([TAG.NULL, 0])), hash: 'sha256' };
  }
  throw new SvidError('ERR_SVID_SIGNER', 'CA key must be EC P-256, EC P-384 or RSA >= 2048');
}

/** Sign a TBSCertificate and wrap it into a Certificate. */
export function signTbs(tbs: Buffer, key: KeyObject, alg: { algId: Buffer; hash: string }): Buffer {
  const sig = cryptoSign(alg.hash, tbs, key.asymmetricKeyType === 'ec' ? { key, dsaEncoding: 'der' } : key);
  return seq(tbs, alg.algId, bitString(sig));
}

/** A positive 16-byte serial from `random` (top bit clear, second bit set: fixed length). */
export function randomSerial(random: Random): Buffer {
  const b = random.bytes(16);
  b[0] = ((b[0] as number) & 0x7f) | 0x40;
  return b;
}

export function createSigner(opts: SignerOptions): SvidSigner {
  const certificate = Buffer.from(opts.certificate);
  const x509 = new X509Certificate(certificate);
  if (!x509.ca)
    throw new SvidError('ERR_SVID_SIGNER', 'signing certificate is not a CA (basicConstraints cA false)');
  if (!x509.checkPrivateKey(opts.privateKey))
    throw new SvidError('ERR_SVID_SIGNER', 'private key does not match the CA certificate');
  const alg = signatureAlgorithm(opts.privateKey);
  const t = tbsTemplate(opts, certificate, alg);
  const signer: SvidSigner = {
    certificate,
    trustDomain: opts.trustDomain,
    notAfter: t.notAfter,
    sign: (req) => signer.issue(req).der,
    issue(req) {
      const b = t.build(req);
      return { ...b.facts, der: signTbs(b.tbs, opts.privateKey, alg) };
    },
  };
  return signer;
}

/** A signer whose CA key sits behind the `CaKey` seam (software or TPM): signing is asynchronous. */
export interface AsyncSvidSigner {
  readonly certificate: Buffer;
  readonly trustDomain: string;
  readonly notAfter: number;
  readonly key: CaKey;
  /** Sign one certificate; returns its DER with its serial and validity. */
  issue(request: SignRequest): Promise<SignedCertificate>;
}

export type CaSignerOptions = Omit<SignerOptions, 'privateKey'> & { readonly key: CaKey };

/**
 * The same DER-template signer over a `CaKey`: the TBSCertificate is built exactly as
 * `createSigner` builds it; only the signature call goes through the seam.
 */
export function createCaSigner(opts: CaSignerOptions): AsyncSvidSigner {
  const certificate = Buffer.from(opts.certificate);
  const x509 = new X509Certificate(certificate);
  if (!x509.ca)
    throw new SvidError('ERR_SVID_SIGNER', 'signing certificate is not a CA (basicConstraints cA false)');
  if (!x509.publicKey.export({ format: 'der', type: 'spki' }).equals(opts.key.spki))
    throw new SvidError('ERR_SVID_SIGNER', 'CA key does not match the CA certificate');
  const alg = signatureAlgorithm(opts.key.publicKey);
  const t = tbsTemplate(opts, certificate, alg);
  return {
    certificate,
    trustDomain: opts.trustDomain,
    notAfter: t.notAfter,
    key: opts.key,
    async issue(req) {
      const b = t.build(req);
      const sig = await opts.key.sign(b.tbs);
      return { ...b.facts, der: seq(b.tbs, alg.algId, bitString(sig)) };
    },
  };
}

/** What is constant per CA and profile is encoded once; `build` encodes the rest of one TBSCertificate. */
function tbsTemplate(
  opts: Omit<SignerOptions, 'privateKey'>,
  certificate: Buffer,
  alg: { algId: Buffer; hash: string },
): { notAfter: number; build(req: SignRequest): { tbs: Buffer; facts: Omit<SignedCertificate, 'der'> } } {
  const parts = parseCertificate(certificate);
  const ski = parts.subjectKeyId ?? keyIdentifier(parts.spki);
  const td = opts.trustDomain;
  const allowed = new Set<Profile>(opts.profiles ?? ['svid', 'device-ca']);
  // The constant head of every TBSCertificate: version, (serial goes here), signature, issuer.
  const afterSerial = Buffer.concat([alg.algId, parts.subjectDer]);
  const constExts = new Map<Profile, Buffer>();
  for (const p of allowed)
    constExts.set(p, Buffer.concat([...PROFILE_EXTENSIONS[p](td), authorityKeyId(ski)]));
  const scope = opts.scope === undefined ? undefined : `${opts.scope}/`;
  if (allowed.has('server') && opts.serverId === undefined)
    throw new TypeError('a signer of server certificates needs serverId');
  return {
    notAfter: parts.notAfter,
    build(req) {
      const fixed = constExts.get(req.profile);
      if (fixed === undefined)
        throw new SvidError('ERR_SVID_SIGNER', `this CA may not sign a ${req.profile}`);
      const id = signableId(req.spiffeId);
      if (id.trustDomain !== td)
        throw new SvidError('ERR_SVID_ID_INVALID', `${req.spiffeId} is not in trust domain ${td}`);
      if (req.profile === 'server') {
        if (req.spiffeId !== opts.serverId)
          throw new SvidError('ERR_SVID_ID_INVALID', `a server certificate is only for ${opts.serverId}`);
      } else if (scope !== undefined && !req.spiffeId.startsWith(scope))
        throw new SvidError('ERR_SVID_ID_INVALID', `${req.spiffeId} is outside this CA's scope ${scope}`);
      const cn = id.segments[id.segments.length - 1];
      if (cn === undefined || cn.length > 64)
        throw new SvidError('ERR_SVID_ID_INVALID', `${req.spiffeId}: last segment must be 1-64 characters`);
      const notBefore = Math.max(req.notBefore, parts.notBefore);
      const notAfter = Math.min(req.notAfter, parts.notAfter);
      if (notAfter <= notBefore)
        throw new SvidError('ERR_SVID_SIGNER', 'the signing CA has expired for this window');
      if (req.serverNames !== undefined && req.serverNames.length > 0 && req.profile === 'device-ca')
        throw new SvidError('ERR_SVID_SIGNER', 'server names belong on an SVID, not on a CA');
      const constraints =
        req.profile === 'device-ca' ? [delegatedCaConstraints(td, req.permittedServerNames ?? [])] : [];
      const extraNames = (req.serverNames ?? []).map(serverGeneralName);
      const spki = Buffer.from(req.spki);
      // A leaf whose CN would look like a DNS name has none (the CA's DNS name constraints apply to it).
      const noCn = req.profile !== 'device-ca' && cn.includes('.');
      const subject = noCn ? seq() : req.profile === 'device-ca' ? name(cn, 'edgeward device CA') : name(cn);
      const san = noCn ? criticalSubjectAltName : subjectAltName;
      const serial = req.serial ?? randomSerial(opts.random);
      const tbs = tlv(
        TAG.SEQUENCE,
        VERSION_3,
        uint(serial),
        afterSerial,
        seq(time(notBefore), time(notAfter)),
        subject,
        spki,
        explicit(
          3,
          seq(
            fixed,
            ...constraints,
            subjectKeyId(keyIdentifier(spki)),
            san({ uri: req.spiffeId }, ...extraNames),
          ),
        ),
      );
      return {
        tbs,
        facts: {
          serialHex: serialHex(serial),
          // time() encodes whole seconds.
          notBefore: Math.floor(notBefore / 1000) * 1000,
          notAfter: Math.floor(notAfter / 1000) * 1000,
        },
      };
    },
  };
}

const DNS_RE =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** A DNS name (letters, digits, hyphens; no wildcard) or an IPv4/IPv6 literal as a GeneralName. */
export function serverGeneralName(name: string): GeneralName {
  if (isIP(name) !== 0) return { ip: ipAddressBytes(name) };
  if (!DNS_RE.test(name))
    throw new SvidError(
      'ERR_SVID_ID_INVALID',
      `server name ${JSON.stringify(name.slice(0, 80))} is not a DNS name or IP address`,
    );
  return { dns: name.toLowerCase() };
}

/** The iPAddress GeneralName bytes of an IPv4 (4 bytes) or IPv6 (16 bytes) literal that `isIP` accepts. */
export function ipAddressBytes(text: string): Buffer {
  if (isIP(text) === 4) return Buffer.from(text.split('.').map(Number));
  const [head = '', tail] = text.split('::');
  const parse = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((h) => Number.parseInt(h, 16));
  const h = parse(head);
  const t = tail === undefined ? [] : parse(tail);
  const words = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  for (const [i, w] of words.entries()) out.writeUInt16BE(w, i * 2);
  return out;
}

/** Parse the ID to sign for; an invalid ID is this signer's ERR_SVID_ID_INVALID. */
function signableId(text: string): SpiffeId {
  try {
    return parseSpiffeId(text);
  } catch (err) {
    if (isEdgewardError(err, 'ERR_SPIFFE_ID_INVALID'))
      throw new SvidError('ERR_SVID_ID_INVALID', err.message, { cause: err });
    throw err;
  }
}

/** The SPKI DER of a public (or private) key. */
export function spkiOf(key: KeyObject): Buffer {
  const pub = key.type === 'public' ? key : createPublicKey(key);
  return pub.export({ format: 'der', type: 'spki' });
}
