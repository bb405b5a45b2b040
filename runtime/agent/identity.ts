/**
 * The gateway's identity in memory: its X.509-SVID with key, and the delegated device CA with
 * key, built from a stored `GatewayRecord` or from what the issuer just answered.
 *
 * `checkIssued` decides whether an issuer answer is acceptable before anything is stored: the
 * leaf carries exactly the SPIFFE ID claimed, under `spiffe://<td>/gateway/`, for *our* new key;
 * the CA is a CA for our new CA key with the same SPIFFE ID; each chain is signed link by link
 * and ends at a root of the bundle that came with it; both are valid now.
 *
 * @example
 * ```ts
 * const live = liveIdentity(record);       // throws ERR_UPSTREAM_PROTOCOL for a malformed record
 * live.svid.notAfter; live.ca.notAfter;
 * ```
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { AgentError } from '../errors.ts';
import type { X509Svid } from '../sources/types.ts';
import type { GatewayRecord } from '../store/records.ts';
import type { CaKey } from '../svid/ca-key.ts';
import { type CaKeyBackend, softwareCaKeys } from './ca-keys.ts';

export interface DelegatedCa {
  readonly chain: readonly X509Certificate[];
  readonly chainDer: readonly Uint8Array[];
  /** The CA key behind the signing seam: software, or TPM-resident (ca-keys.ts). */
  readonly key: CaKey;
  readonly notBefore: number;
  readonly notAfter: number;
}

export interface LiveIdentity {
  readonly svid: X509Svid;
  readonly svidNotBefore: number;
  readonly ca: DelegatedCa;
  readonly record: GatewayRecord;
}

/** The single URI SAN of a certificate, or undefined when it has none or several. */
export function uriSan(cert: X509Certificate): string | undefined {
  const uris = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  return uris.length === 1 ? uris[0] : undefined;
}

const protocol = (msg: string, cause?: unknown): AgentError =>
  new AgentError('ERR_UPSTREAM_PROTOCOL', msg, {}, cause === undefined ? undefined : { cause });

function parseChain(ders: readonly Uint8Array[], what: string): X509Certificate[] {
  if (!Array.isArray(ders) || ders.length === 0) throw protocol(`${what}: empty chain`);
  return ders.map((d, i) => {
    try {
      return new X509Certificate(Buffer.from(d));
    } catch (cause) {
      throw protocol(`${what}[${i}] is not a certificate`, cause);
    }
  });
}

const validity = (c: X509Certificate): { notBefore: number; notAfter: number } => ({
  notBefore: Date.parse(c.validFrom),
  notAfter: Date.parse(c.validTo),
});

/** Opens the stored CA key of a record (ca-keys.ts). */
export type OpenCaKey = (backend: CaKeyBackend, stored: Uint8Array) => CaKey;

/**
 * Without a TPM at hand (a firmware hook reading the SVID, a tool): software keys open as usual;
 * a TPM-resident key is represented by the CA certificate's public key and refuses to sign.
 */
function openWithoutTpm(caCert: X509Certificate): OpenCaKey {
  const software = softwareCaKeys(() => {
    throw new TypeError('no key factory');
  }).open;
  return (backend, stored) =>
    backend === 'software'
      ? software(backend, stored)
      : {
          backend,
          spki: caCert.publicKey.export({ format: 'der', type: 'spki' }),
          publicKey: caCert.publicKey,
          sign: async () => {
            throw new AgentError(
              'ERR_CA_KEY_UNAVAILABLE',
              'the delegated CA key is in a TPM this caller has not opened',
            );
          },
          close: async () => {},
        };
}

/** Build the in-memory identity from a record (from the store or freshly assembled). */
export function liveIdentity(rec: GatewayRecord, openCaKey?: OpenCaKey): LiveIdentity {
  const chain = parseChain(rec.svidChain, 'svid chain');
  const caChain = parseChain(rec.caChain, 'device CA chain');
  let svidKey: KeyObject;
  try {
    svidKey = createPrivateKey({ key: Buffer.from(rec.svidKey), format: 'der', type: 'pkcs8' });
  } catch (cause) {
    throw protocol('stored private key does not parse', cause);
  }
  const leaf = chain[0] as X509Certificate;
  const ca = caChain[0] as X509Certificate;
  const caKey = (openCaKey ?? openWithoutTpm(ca))(rec.caKeyBackend ?? 'software', rec.caKey);
  // The earliest NotAfter of the chain bounds the SVID (sources/types.ts).
  const notAfter = Math.min(...chain.map((c) => validity(c).notAfter));
  const caNotAfter = Math.min(...caChain.map((c) => validity(c).notAfter));
  return {
    svid: { spiffeId: rec.spiffeId, chain, privateKey: svidKey, notAfter },
    svidNotBefore: validity(leaf).notBefore,
    ca: {
      chain: caChain,
      chainDer: rec.caChain,
      key: caKey,
      notBefore: validity(ca).notBefore,
      notAfter: caNotAfter,
    },
    record: rec,
  };
}

/** Reject an issuer answer that is not a valid identity for our keys, at `now`. */
export function checkIssued(
  live: LiveIdentity,
  o: { trustDomain: string; roots: readonly X509Certificate[]; now: number },
): void {
  const { svid, ca } = live;
  const leaf = svid.chain[0] as X509Certificate;
  const prefix = `spiffe://${o.trustDomain}/gateway/`;
  if (!svid.spiffeId.startsWith(prefix) || svid.spiffeId.slice(prefix.length).includes('/'))
    throw protocol(`issued SPIFFE ID ${svid.spiffeId} is not a gateway of ${o.trustDomain}`);
  if (uriSan(leaf) !== svid.spiffeId) throw protocol('SVID URI SAN differs from the SPIFFE ID claimed');
  if (leaf.ca) throw protocol('SVID leaf is a CA certificate');
  if (!leaf.checkPrivateKey(svid.privateKey)) throw protocol('SVID is not for our key');
  const caCert = ca.chain[0] as X509Certificate;
  if (!caCert.ca) throw protocol('delegated CA certificate is not a CA');
  if (!Buffer.from(ca.key.spki).equals(spkiOfCert(caCert)))
    throw protocol('delegated CA is not for our CA key');
  if (uriSan(caCert) !== svid.spiffeId)
    throw protocol('delegated CA URI SAN differs from the gateway SPIFFE ID');
  for (const [what, chain, nb, na] of [
    ['SVID', svid.chain, live.svidNotBefore, svid.notAfter],
    ['device CA', ca.chain, ca.notBefore, ca.notAfter],
  ] as const) {
    if (!(nb <= o.now && o.now < na)) throw protocol(`${what} is not valid now`);
    verifyChain(chain, o.roots, what);
  }
}

/** The certificate's SubjectPublicKeyInfo DER; a key OpenSSL cannot decode is a protocol error. */
function spkiOfCert(cert: X509Certificate): Buffer {
  try {
    return cert.publicKey.export({ format: 'der', type: 'spki' });
  } catch (cause) {
    throw protocol('delegated CA public key does not decode', cause);
  }
}

function verifyChain(
  chain: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  what: string,
): void {
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i] as X509Certificate;
    const parent = chain[i + 1] as X509Certificate;
    if (!parent.ca || !child.checkIssued(parent) || !child.verify(parent.publicKey))
      throw protocol(`${what} chain link ${i} is not signed by the next certificate`);
  }
  const top = chain[chain.length - 1] as X509Certificate;
  if (!roots.some((r) => top.checkIssued(r) && top.verify(r.publicKey)))
    throw protocol(`${what} chain does not end at a root of the bundle`);
}
