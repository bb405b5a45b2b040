/**
 * The gateway behind an mTLS request (renewal, firmware staging, the offline device-issuance
 * log): its TLS client certificate must be a current, unrevoked gateway SVID that this issuer
 * signed and recorded, of a gateway that is neither disabled nor revoked.
 *
 * `peerGateway` is the first, store-free half of that check (signed by one of our roots, valid
 * now, one gateway SPIFFE ID of our trust domain): the key the request is rate limited under, so
 * a gateway's requests count against its own identity, not against an address it may share
 * behind a NAT. The signature check is done once per certificate and request: remembered for the
 * DER bytes object of the request, with the root that verified it (re-checked to still be a root).
 */
import { X509Certificate } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import { gatewayId, isPathSegment } from '../spiffe/id.ts';
import { type CertificateParts, parseCertificate } from '../svid/certificate.ts';
import type { AuditInfo, IssuerCore, RequestContext } from './core.ts';
import { checkUsable } from './gateways.ts';
import { type GatewayRecord, type IssuedRecord, K } from './records.ts';
import type { StoreEntry } from './store.ts';

interface Verified {
  readonly cert: X509Certificate;
  readonly parts: CertificateParts;
  /** The root that signed it (undefined: none of ours did). */
  readonly root: X509Certificate | undefined;
}

const verified = new WeakMap<Uint8Array, Verified>();

/** Parsed, and checked against the current roots; undefined when it does not parse. */
function verify(
  core: Pick<IssuerCore, 'roots'>,
  der: Uint8Array,
  parsed?: X509Certificate,
): Verified | undefined {
  const roots = core.roots();
  const known = verified.get(der);
  if (known?.root !== undefined && roots.includes(known.root)) return known;
  let v: Verified;
  try {
    const cert = parsed ?? new X509Certificate(Buffer.from(der));
    const parts = parseCertificate(der);
    v = { cert, parts, root: roots.find((r) => cert.checkIssued(r) && cert.verify(r.publicKey)) };
  } catch {
    return undefined;
  }
  verified.set(der, v);
  return v;
}

/** `spiffe://<td>/gateway/` by trust domain (built and validated once). */
const gatewayPrefixes = new Map<string, string>();

/** The gateway name in a gateway SPIFFE ID of our trust domain, else undefined. */
function gatewayNameOf(trustDomain: string, id: string): string | undefined {
  let prefix = gatewayPrefixes.get(trustDomain);
  if (prefix === undefined) {
    prefix = gatewayId(trustDomain, 'x').slice(0, -1);
    gatewayPrefixes.set(trustDomain, prefix);
  }
  const name = id.startsWith(prefix) ? id.slice(prefix.length) : '';
  return isPathSegment(name) ? name : undefined;
}

/** The gateway name of a current gateway SVID signed by this issuer (no store read), else undefined. */
export function peerGateway(
  core: Pick<IssuerCore, 'roots' | 'clock' | 'trustDomain'>,
  ctx: RequestContext,
): string | undefined {
  if (ctx.peerCertificate === undefined || ctx.peerCertificate.length === 0) return undefined;
  const v = verify(core, ctx.peerCertificate, ctx.peerX509);
  if (v?.root === undefined || v.cert.ca || v.parts.uris.length !== 1) return undefined;
  const now = core.clock.now();
  if (now < v.parts.notBefore || now >= v.parts.notAfter) return undefined;
  return gatewayNameOf(core.trustDomain, v.parts.uris[0] as string);
}

export async function authenticatePeer(
  core: IssuerCore,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<GatewayRecord> {
  return (await authenticatePeerWith(core, ctx, info)).gw;
}

/**
 * `authenticatePeer`, reading the SVID's issued record, the gateway record (with its version, for
 * the issuance batch's precondition) and the caller's `also` keys in one store round trip.
 */
export async function authenticatePeerWith(
  core: IssuerCore,
  ctx: RequestContext,
  info: AuditInfo,
  also: readonly string[] = [],
): Promise<{
  gw: GatewayRecord;
  entry: StoreEntry<GatewayRecord>;
  also: (StoreEntry<unknown> | undefined)[];
}> {
  const deny = (why: string): IssuerError =>
    new IssuerError('ERR_ISSUER_CLIENT_CERT', `this request needs the gateway SVID: ${why}`);
  if (ctx.peerCertificate === undefined || ctx.peerCertificate.length === 0)
    throw deny('no client certificate');
  const v = verify(core, ctx.peerCertificate, ctx.peerX509);
  if (v === undefined) throw deny('client certificate does not parse');
  if (v.root === undefined) throw deny('not signed by this issuer');
  const { cert, parts } = v;
  const now = core.clock.now();
  if (now < parts.notBefore || now >= parts.notAfter) throw deny('expired or not yet valid');
  if (cert.ca || parts.uris.length !== 1) throw deny('not an X.509-SVID');
  const spiffeId = parts.uris[0] as string;
  info.spiffeId = spiffeId;
  const name = gatewayNameOf(core.trustDomain, spiffeId);
  if (name === undefined) throw deny('not a gateway SVID this issuer knows');
  const [issuedEntry, gwEntry, ...more] = await core.store.getEntries<unknown>([
    K.issued(parts.serialHex),
    K.gateway(name),
    ...also,
  ]);
  const issued = issuedEntry?.value as IssuedRecord | undefined;
  if (
    issued === undefined ||
    issued.kind !== 'svid' ||
    issued.spiffeId !== spiffeId ||
    issued.gateway !== name
  )
    throw deny('not a gateway SVID this issuer knows');
  info.gateway = name;
  if (core.isRevokedSerial(parts.serialHex) || core.isRevokedId(spiffeId))
    throw new IssuerError('ERR_ISSUER_REVOKED', `${spiffeId} is revoked`);
  const entry = gwEntry as StoreEntry<GatewayRecord> | undefined;
  checkUsable(core, name, entry?.value);
  if (entry === undefined) throw deny('unknown gateway');
  info.method = entry.value.method;
  return { gw: entry.value, entry, also: more };
}
