/**
 * X.509-SVID verification of a presented chain (leaf first), as every verifier in edgeward does
 * it: the transport for device connections, the agent and the OTA code.
 *
 * The checks, in order:
 * 1. the leaf follows the X.509-SVID rules (exactly one URI SAN holding a SPIFFE ID with a path,
 *    cA false, critical key usage with digitalSignature and without keyCertSign/cRLSign, EKU with
 *    the purpose when present, no unknown critical extension);
 * 2. the chain leads, signature by signature, to a root of the bundle of the leaf's trust domain,
 *    or to this gateway's delegated CA when one is given; every intermediate is a CA whose
 *    pathLen allows what is below it (RFC 5280 §4.2.1.9) and whose URI name constraints admit
 *    it (RFC 5280 §4.2.1.10);
 * 3. path scoping (ARCHITECTURE.md §2): a CA whose URI SAN is a SPIFFE ID with a path (a
 *    gateway's delegated CA) only vouches for `<that id>/device/<one segment>` and
 *    `<that id>/workload/<one segment>`, and, where a server is verified (`purpose: 'server'`:
 *    devices, the SDK, the enrollment client), for the gateway's own server identity: exactly
 *    `<that id>`, EKU serverAuth and not clientAuth. Anything else is `ERR_SVID_PATH_SCOPE`;
 * 4. every certificate of the path is valid at `now`, and neither the IDs nor the serials are
 *    revoked.
 * Steps 1–3 do not depend on time and are cached by `SvidVerifier` per chain and bundle; step 4
 * runs on every call.
 *
 * @example
 * ```ts
 * const v = new SvidVerifier();
 * const ok = v.verify(peerDerChain, { now: clock.now(), bundle, delegatedCa, revocation });
 * ok.spiffeId; ok.notAfter; ok.signerId; // signerId: the delegated CA's ID, when it signed the leaf
 * ```
 */
import { createHash, X509Certificate } from 'node:crypto';
import { SpiffeError } from '../errors.ts';
import type { RevocationSource, X509Bundle } from '../sources/types.ts';
import {
  type CertFacts,
  certFacts,
  KU_CRL_SIGN,
  KU_DIGITAL_SIGNATURE,
  KU_KEY_CERT_SIGN,
  OID_CLIENT_AUTH,
  OID_SERVER_AUTH,
  uriHostMatches,
} from './cert-facts.ts';
import { inDelegatedScope, parseSpiffeId } from './id.ts';

export type SvidPurpose = 'client' | 'server';

export interface VerifyOptions {
  readonly now: number;
  readonly bundle: X509Bundle;
  /** This gateway's delegated device CA: trusted as an anchor for the leaves it signs. */
  readonly delegatedCa?: X509Certificate | undefined;
  readonly revocation?: RevocationSource | undefined;
  /** Which EKU the leaf must carry when it has an EKU extension; default `client`. */
  readonly purpose?: SvidPurpose;
}

export interface VerifiedSvid {
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly leaf: X509Certificate;
  /** The earliest NotAfter of the path, epoch ms: the session may live until then. */
  readonly notAfter: number;
  readonly notBefore: number;
  /** Serials of the path (lowercase hex). */
  readonly serials: readonly string[];
  /** The SPIFFE ID of the CA that signed the leaf, when that CA has one (a delegated CA). */
  readonly signerId: string | undefined;
  /** SPIFFE IDs of the CAs of the path (their revocation revokes the leaf too). */
  readonly caIds: readonly string[];
}

/** What the cache keeps: no certificate objects, so a cached entry holds no native memory. */
type StaticPart = Omit<VerifiedSvid, 'leaf'>;

const MAX_CHAIN = 8;

/** Verify once, without caching. Throws `SpiffeError` (ERR_SVID_*). */
export function verifyX509Svid(chain: readonly X509Certificate[], opts: VerifyOptions): VerifiedSvid {
  const result = verifyStatic(chain, opts);
  checkDynamic(result, opts);
  return { ...result, leaf: chain[0] as X509Certificate };
}

/** A verifier that caches the time-independent part per (chain, bundle sequence, delegated CA). */
export class SvidVerifier {
  readonly #cache = new Map<string, StaticPart>();
  readonly #max: number;

  constructor(options: { maxEntries?: number } = {}) {
    this.#max = options.maxEntries ?? 4096;
  }

  /** Verify a chain given as DER buffers (what `tls.TLSSocket.getPeerCertificate(true)` yields). */
  verifyDer(chainDer: readonly Uint8Array[], opts: VerifyOptions): VerifiedSvid {
    if (chainDer.length === 0) throw new SpiffeError('ERR_SVID_INVALID', 'no certificate presented');
    const h = createHash('sha256');
    for (const d of chainDer) h.update(d);
    const key = `${opts.bundle.trustDomain}|${opts.bundle.sequence}|${opts.delegatedCa?.fingerprint256 ?? '-'}|${opts.purpose ?? 'client'}|${h.digest('base64')}`;
    let result = this.#cache.get(key);
    if (result === undefined) {
      let certs: X509Certificate[];
      try {
        certs = chainDer.map((d) => new X509Certificate(d));
      } catch (cause) {
        throw new SpiffeError('ERR_SVID_INVALID', 'certificate does not parse', { cause });
      }
      result = verifyStatic(certs, opts);
      if (this.#cache.size >= this.#max) this.#cache.clear();
      this.#cache.set(key, result);
    }
    checkDynamic(result, opts);
    return { ...result, leaf: new X509Certificate(chainDer[0] as Uint8Array) };
  }

  /**
   * Verify certificates as `tls.TLSSocket.getPeerX509Certificate()` and its `issuerCertificate`
   * links give them; the cache key is their SHA-256 fingerprints, so a cached chain costs no parsing.
   */
  verifyCerts(chain: readonly X509Certificate[], opts: VerifyOptions): VerifiedSvid {
    if (chain.length === 0) throw new SpiffeError('ERR_SVID_INVALID', 'no certificate presented');
    let key = `${opts.bundle.trustDomain}|${opts.bundle.sequence}|${opts.delegatedCa?.fingerprint256 ?? '-'}|${opts.purpose ?? 'client'}`;
    for (const c of chain) key += `|${c.fingerprint256}`;
    let result = this.#cache.get(key);
    if (result === undefined) {
      result = verifyStatic(chain, opts);
      if (this.#cache.size >= this.#max) this.#cache.clear();
      this.#cache.set(key, result);
    }
    checkDynamic(result, opts);
    return { ...result, leaf: chain[0] as X509Certificate };
  }

  /** Forget every cached result (e.g. when the bundle or the delegated CA changes). */
  clear(): void {
    this.#cache.clear();
  }
}

function invalid(msg: string, spiffeId?: string): never {
  throw new SpiffeError('ERR_SVID_INVALID', msg, spiffeId === undefined ? {} : { spiffeId });
}

function untrusted(msg: string, spiffeId: string): never {
  throw new SpiffeError('ERR_SVID_UNTRUSTED', msg, { spiffeId });
}

function checkLeaf(f: CertFacts, purpose: SvidPurpose): string {
  // X.509-SVID §2: exactly one URI SAN.
  if (f.uris.length !== 1) invalid(`leaf must have exactly one URI SAN, has ${f.uris.length}`);
  let id: ReturnType<typeof parseSpiffeId>;
  try {
    id = parseSpiffeId(f.uris[0] as string);
  } catch (cause) {
    throw new SpiffeError(
      'ERR_SVID_INVALID',
      `leaf URI SAN is not a SPIFFE ID: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
  const sid = id.id;
  // X.509-SVID §4.1: a leaf's SPIFFE ID has a path and cA is false.
  if (id.path === '') invalid('leaf SPIFFE ID must have a path', sid);
  if (f.ca) invalid('leaf has cA=true: a CA certificate cannot be used as an SVID', sid);
  // X.509-SVID §4.3: key usage critical, digitalSignature set, keyCertSign and cRLSign clear.
  if (f.keyUsage === undefined) invalid('leaf has no key usage extension', sid);
  if (!f.keyUsageCritical) invalid('leaf key usage must be critical', sid);
  if ((f.keyUsage & KU_DIGITAL_SIGNATURE) === 0) invalid('leaf key usage lacks digitalSignature', sid);
  if ((f.keyUsage & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) !== 0)
    invalid('leaf key usage has keyCertSign or cRLSign', sid);
  // X.509-SVID §4.4: EKU, when present, must allow the use.
  const need = purpose === 'client' ? OID_CLIENT_AUTH : OID_SERVER_AUTH;
  if (f.extKeyUsage !== undefined && !f.extKeyUsage.includes(need))
    invalid(`leaf EKU lacks ${purpose}Auth`, sid);
  if (f.unknownCritical.length > 0)
    invalid(`leaf has unknown critical extension ${f.unknownCritical[0]}`, sid);
  return sid;
}

function checkCa(
  f: CertFacts,
  below: number,
  leaf: { id: string; facts: CertFacts; purpose: SvidPurpose },
  trustDomain: string,
  what: string,
): string | undefined {
  const leafId = leaf.id;
  if (!f.ca) untrusted(`${what} is not a CA (cA=false)`, leafId);
  if (f.keyUsage !== undefined && (f.keyUsage & KU_KEY_CERT_SIGN) === 0)
    untrusted(`${what} lacks keyCertSign`, leafId);
  // RFC 5280 §4.2.1.9: pathLenConstraint counts the non-leaf certificates below.
  if (f.pathLength !== undefined && below > f.pathLength)
    untrusted(`${what} pathLen ${f.pathLength} exceeded`, leafId);
  if (f.unknownCritical.length > 0)
    untrusted(`${what} has unknown critical extension ${f.unknownCritical[0]}`, leafId);
  if (f.uris.length > 1) untrusted(`${what} has more than one URI SAN`, leafId);
  const uri = f.uris[0];
  if (uri === undefined) return undefined;
  let caId: ReturnType<typeof parseSpiffeId>;
  try {
    caId = parseSpiffeId(uri);
  } catch {
    return untrusted(`${what} URI SAN is not a SPIFFE ID`, leafId);
  }
  if (caId.trustDomain !== trustDomain)
    untrusted(`${what} belongs to trust domain ${caId.trustDomain}`, leafId);
  // ARCHITECTURE.md §2 path scoping: a CA with a SPIFFE path only signs `<id>/device/<x>`,
  // `<id>/workload/<x>`, and its own server identity, admitted only where a server is verified.
  if (caId.path !== '' && !inDelegatedScope(leafId, caId.id)) {
    if (leafId !== caId.id)
      throw new SpiffeError(
        'ERR_SVID_PATH_SCOPE',
        `${leafId} is not under ${caId.id}/device/ or /workload/`,
        {
          spiffeId: leafId,
        },
      );
    if (!(leaf.purpose === 'server' && serverOnly(leaf.facts)))
      throw new SpiffeError(
        'ERR_SVID_PATH_SCOPE',
        `${leafId} is the gateway's server identity: admitted only as a server, with serverAuth and without clientAuth`,
        { spiffeId: leafId },
      );
  }
  return caId.path === '' ? undefined : caId.id;
}

/** EKU present with serverAuth and without clientAuth. */
function serverOnly(f: CertFacts): boolean {
  const eku = f.extKeyUsage ?? [];
  return eku.includes(OID_SERVER_AUTH) && !eku.includes(OID_CLIENT_AUTH);
}

function checkConstraints(f: CertFacts, hosts: readonly string[], leafId: string, what: string): void {
  for (const host of hosts) {
    if (f.permittedUris !== undefined && !f.permittedUris.some((b) => uriHostMatches(host, b))) {
      untrusted(`${what} name constraints do not permit ${host}`, leafId);
    }
    if (f.excludedUris?.some((b) => uriHostMatches(host, b)))
      untrusted(`${what} name constraints exclude ${host}`, leafId);
  }
}

function signedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function verifyStatic(chain: readonly X509Certificate[], opts: VerifyOptions): StaticPart {
  if (chain.length === 0) invalid('no certificate presented');
  if (chain.length > MAX_CHAIN) invalid(`chain longer than ${MAX_CHAIN}`);
  const leaf = certFacts(chain[0] as X509Certificate);
  const purpose = opts.purpose ?? 'client';
  const leafId = checkLeaf(leaf, purpose);
  const trustDomain = parseSpiffeId(leafId).trustDomain;
  if (trustDomain !== opts.bundle.trustDomain) {
    untrusted(
      `leaf belongs to trust domain ${trustDomain}, bundle is for ${opts.bundle.trustDomain}`,
      leafId,
    );
  }
  const path: CertFacts[] = [leaf];
  let anchor: X509Certificate | undefined;
  let anchorIsRoot = false;
  for (let i = 1; anchor === undefined; i++) {
    const cur = path[path.length - 1] as CertFacts;
    const root = opts.bundle.roots.find((r) => signedBy(cur.cert, r));
    if (root !== undefined) {
      anchor = root;
      anchorIsRoot = true;
      break;
    }
    if (opts.delegatedCa !== undefined && signedBy(cur.cert, opts.delegatedCa)) {
      anchor = opts.delegatedCa;
      break;
    }
    const next = chain[i];
    if (next === undefined) untrusted('chain does not lead to a root of the bundle', leafId);
    if (!signedBy(cur.cert, next)) untrusted(`certificate ${i} did not sign certificate ${i - 1}`, leafId);
    path.push(certFacts(next));
  }
  const anchorFacts = certFacts(anchor);
  const cas = [...path.slice(1), anchorFacts];
  const host = trustDomain;
  const caIds: string[] = [];
  let signerId: string | undefined;
  cas.forEach((f, k) => {
    const what =
      k === cas.length - 1 ? (anchorIsRoot ? 'bundle root' : 'delegated CA') : `intermediate ${k + 1}`;
    const id = checkCa(f, k, { id: leafId, facts: leaf, purpose }, trustDomain, what);
    if (id !== undefined) caIds.push(id);
    if (k === 0) signerId = id;
    const hosts = [host];
    checkConstraints(f, hosts, leafId, what);
  });
  const all = [...path, ...(anchorIsRoot ? [] : [anchorFacts])];
  const withRoot = [...path, anchorFacts];
  return {
    spiffeId: leafId,
    trustDomain,
    notAfter: Math.min(...withRoot.map((f) => f.notAfter)),
    notBefore: Math.max(...withRoot.map((f) => f.notBefore)),
    serials: all.map((f) => f.serial),
    signerId,
    caIds,
  };
}

/**
 * A chain is valid from the latest NotBefore up to, not including, the earliest NotAfter: the
 * project's one rule (the agent's sources, the local server identity, the SDK and the fleet
 * invariants all end a credential at its NotAfter), one millisecond stricter than RFC 5280's
 * inclusive reading, so "local service stops exactly at the budget end" holds for every verifier.
 */
function checkDynamic(r: StaticPart, opts: VerifyOptions): void {
  if (opts.now < r.notBefore) {
    throw new SpiffeError('ERR_SVID_EXPIRED', `${r.spiffeId}: a certificate of the chain is not valid yet`, {
      spiffeId: r.spiffeId,
    });
  }
  if (opts.now >= r.notAfter) {
    throw new SpiffeError('ERR_SVID_EXPIRED', `${r.spiffeId}: a certificate of the chain has expired`, {
      spiffeId: r.spiffeId,
    });
  }
  const rev = opts.revocation;
  if (rev === undefined) return;
  if (rev.isRevokedId(r.spiffeId) || r.caIds.some((id) => rev.isRevokedId(id))) {
    throw new SpiffeError('ERR_SVID_REVOKED', `${r.spiffeId} is revoked`, { spiffeId: r.spiffeId });
  }
  const serial = r.serials.find((s) => rev.isRevokedSerial(s));
  if (serial !== undefined) {
    throw new SpiffeError('ERR_SVID_REVOKED', `${r.spiffeId}: certificate serial ${serial} is revoked`, {
      spiffeId: r.spiffeId,
    });
  }
}
