/**
 * A test PKI built in code (STYLE.md rule 12): a trust domain root, a gateway SVID (server and
 * client), the gateway's delegated device CA (pathLen 0, name-constrained), device SVIDs, and
 * broken variants named after their failure. Everything is ECDSA P-256 and built relative to
 * `now`, so tests with a VirtualClock get certificates valid at the virtual time.
 *
 * @example
 * ```ts
 * const pki = await buildPki({ now: clock.now() });
 * const dev = await pki.device('sensor-1');           // { id, chain, key, pem: { cert, key } }
 * const bad = await pki.broken('ca-true');             // a CA certificate used as a client cert
 * ```
 */
import 'reflect-metadata';
import {
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  webcrypto,
  X509Certificate,
} from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import type { AgentDeviceSigner } from '../../runtime/agent/device-signer.ts';
import type { Clock } from '../../runtime/core/clock.ts';
import type { X509Bundle, X509Svid } from '../../runtime/sources/types.ts';
import { OID_CLIENT_AUTH, OID_SERVER_AUTH } from '../../runtime/spiffe/cert-facts.ts';
import { explicit, implicit, seq } from '../../runtime/spiffe/der.ts';
import { seededRandom } from '../../sim/random.ts';
import { fixedDeviceSigner } from './device-signer.ts';

x509.cryptoProvider.set(webcrypto as never);

export const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** Convert a `node:crypto` private KeyObject (EC P-256) to a WebCrypto signing key. */
async function toSigningKey(key: KeyObject): Promise<webcrypto.CryptoKey> {
  const pkcs8 = key.export({ format: 'der', type: 'pkcs8' });
  return webcrypto.subtle.importKey('pkcs8', pkcs8, ECDSA_P256, false, [
    'sign',
  ]) as Promise<webcrypto.CryptoKey>;
}

/** NameConstraints with one permitted uniformResourceIdentifier subtree (RFC 5280 §4.2.1.10). */
function uriNameConstraint(host: string): x509.Extension {
  const der = seq(explicit(0, seq(implicit(6, Buffer.from(host, 'latin1')))));
  return new x509.Extension('2.5.29.30', true, der);
}

const HOUR = 3_600_000;
let serialCounter = 1;

export interface Issued {
  readonly id: string;
  readonly cert: X509Certificate;
  readonly key: KeyObject;
  /** Leaf first, then intermediates (no root). */
  readonly chain: readonly X509Certificate[];
  readonly pem: { readonly cert: string; readonly key: string };
  readonly svid: X509Svid;
}

export interface CertSpec {
  readonly subject?: string;
  readonly uris?: readonly string[];
  readonly dns?: readonly string[];
  readonly ips?: readonly string[];
  readonly ca?: boolean;
  readonly pathLength?: number;
  /** Key usage bits; `null` leaves the extension out. */
  readonly keyUsage?: number | null;
  readonly keyUsageCritical?: boolean;
  readonly eku?: readonly string[] | null;
  readonly nameConstraint?: string;
  readonly notBefore: number;
  readonly notAfter: number;
  /** Omit for self-signed. */
  readonly issuer?: { cert: X509Certificate; key: KeyObject };
  readonly key?: KeyObject;
}

export function newKey(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}

/** Build any certificate, correct or not. */
export async function makeCert(spec: CertSpec): Promise<{ cert: X509Certificate; key: KeyObject }> {
  const key = spec.key ?? newKey();
  const subjectName = spec.subject ?? 'CN=test';
  const KU = x509.KeyUsageFlags;
  const ext: x509.Extension[] = [new x509.BasicConstraintsExtension(spec.ca === true, spec.pathLength, true)];
  const ku =
    spec.keyUsage === undefined
      ? spec.ca
        ? KU.keyCertSign | KU.cRLSign
        : KU.digitalSignature | KU.keyEncipherment | KU.keyAgreement
      : spec.keyUsage;
  if (ku !== null) ext.push(new x509.KeyUsagesExtension(ku, spec.keyUsageCritical ?? true));
  const eku = spec.eku === undefined ? (spec.ca ? null : [OID_SERVER_AUTH, OID_CLIENT_AUTH]) : spec.eku;
  if (eku !== null) ext.push(new x509.ExtendedKeyUsageExtension([...eku], false));
  const names: x509.JsonGeneralName[] = [
    ...(spec.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(spec.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(spec.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (names.length > 0) ext.push(new x509.SubjectAlternativeNameExtension(names, false));
  if (spec.nameConstraint !== undefined) ext.push(uriNameConstraint(spec.nameConstraint));
  const signer = spec.issuer?.key ?? key;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serialCounter++).toString(16).padStart(8, '0').replace(/^0/, '1'),
    subject: subjectName,
    issuer:
      spec.issuer === undefined ? subjectName : new x509.X509Certificate(spec.issuer.cert.raw).subjectName,
    notBefore: new Date(spec.notBefore),
    notAfter: new Date(spec.notAfter),
    publicKey: new Uint8Array(createPublicKey(key).export({ type: 'spki', format: 'der' })),
    signingKey: await toSigningKey(signer),
    signingAlgorithm: ECDSA_P256,
    extensions: ext,
  });
  return { cert: new X509Certificate(Buffer.from(cert.rawData)), key };
}

function issued(
  id: string,
  cert: X509Certificate,
  key: KeyObject,
  intermediates: readonly X509Certificate[],
): Issued {
  const chain = [cert, ...intermediates];
  return {
    id,
    cert,
    key,
    chain,
    pem: {
      cert: chain.map((c) => c.toString()).join(''),
      key: key.export({ type: 'pkcs8', format: 'pem' }) as string,
    },
    svid: {
      spiffeId: id,
      chain,
      privateKey: key,
      notAfter: Math.min(...chain.map((c) => Date.parse(c.validTo))),
    },
  };
}

export type BrokenKind =
  | 'ca-true'
  | 'two-uris'
  | 'no-uri'
  | 'wrong-ca'
  | 'expired'
  | 'not-yet-valid'
  | 'other-gateway-path'
  | 'not-device-path'
  | 'no-key-usage'
  | 'key-usage-not-critical'
  | 'key-cert-sign'
  | 'server-only-eku'
  | 'other-trust-domain'
  | 'expired-intermediate';

export interface TestPki {
  readonly trustDomain: string;
  readonly root: { cert: X509Certificate; key: KeyObject };
  readonly bundle: X509Bundle;
  readonly bundlePem: string;
  readonly gateway: Issued;
  readonly deviceCa: Issued;
  /** A second gateway of the same trust domain, with its own delegated CA. */
  readonly otherCa: Issued;
  device(deviceId: string, opts?: { notBefore?: number; notAfter?: number; ca?: Issued }): Promise<Issued>;
  /**
   * A leaf signed by this gateway's delegated CA (or `by`) for `id` (default: the gateway's own
   * ID, i.e. its local server identity), EKU `eku` (default serverAuth only), DNS localhost.
   */
  underCa(o?: { id?: string; eku?: readonly string[] | null; by?: Issued }): Promise<Issued>;
  /** A gateway SVID (server certificate) for this gateway, e.g. the next one of a rotation. */
  gatewaySvid(opts?: { notBefore?: number; notAfter?: number }): Promise<Issued>;
  broken(kind: BrokenKind): Promise<Issued>;
  /** The product's device signer over this gateway's delegated CA. */
  signer(clock: Clock, ttlMs?: number): AgentDeviceSigner;
}

export async function buildPki(
  opts: {
    now?: number;
    trustDomain?: string;
    gateway?: string;
    lifetimeMs?: number;
    /** The root's subject CN (default `<td> root`); no key identifiers here, so give a second root its own name. */
    rootName?: string;
  } = {},
): Promise<TestPki> {
  const now = opts.now ?? Date.now();
  const td = opts.trustDomain ?? 'fleet.example';
  const gwName = opts.gateway ?? 'gw-1';
  const life = opts.lifetimeMs ?? 24 * HOUR;
  const nb = now - HOUR;
  const root = await makeCert({
    subject: `CN=${opts.rootName ?? `${td} root`}`,
    uris: [`spiffe://${td}`],
    ca: true,
    notBefore: nb,
    notAfter: now + 365 * 24 * HOUR,
  });
  const gwId = `spiffe://${td}/gateway/${gwName}`;
  const gatewaySvid = async (o: { notBefore?: number; notAfter?: number } = {}): Promise<Issued> => {
    const c = await makeCert({
      subject: `CN=${gwName}`,
      uris: [gwId],
      dns: ['localhost'],
      ips: ['127.0.0.1'],
      notBefore: o.notBefore ?? nb,
      notAfter: o.notAfter ?? now + life,
      issuer: root,
    });
    return issued(gwId, c.cert, c.key, []);
  };
  const gateway = await gatewaySvid();
  const caFor = async (id: string, name: string, notAfter = now + life): Promise<Issued> => {
    const c = await makeCert({
      subject: `CN=${name} device CA`,
      uris: [id],
      ca: true,
      pathLength: 0,
      nameConstraint: td,
      notBefore: nb,
      notAfter,
      issuer: root,
    });
    return issued(id, c.cert, c.key, []);
  };
  const deviceCa = await caFor(gwId, gwName);
  const otherCa = await caFor(`spiffe://${td}/gateway/gw-2`, 'gw-2');
  const leaf = async (spec: Partial<CertSpec> & { id: string; by?: Issued }): Promise<Issued> => {
    const { by, ...rest } = spec;
    const ca = by ?? deviceCa;
    const c = await makeCert({
      subject: `CN=${spec.id.split('/').pop()}`,
      uris: [spec.id],
      notBefore: nb,
      notAfter: now + life / 2,
      issuer: { cert: ca.cert, key: ca.key },
      ...rest,
    });
    return issued(spec.id, c.cert, c.key, [ca.cert]);
  };
  const devId = (d: string) => `${gwId}/device/${d}`;
  const bundle: X509Bundle = { trustDomain: td, roots: [root.cert], sequence: 1 };
  return {
    trustDomain: td,
    root,
    bundle,
    bundlePem: root.cert.toString(),
    gateway,
    deviceCa,
    otherCa,
    gatewaySvid,
    underCa: (o = {}) =>
      leaf({
        id: o.id ?? gwId,
        eku: o.eku === undefined ? [OID_SERVER_AUTH] : o.eku,
        dns: ['localhost'],
        ...(o.by ? { by: o.by } : {}),
      }),
    device: (d, o = {}) =>
      leaf({
        id: o.ca ? `${o.ca.id}/device/${d}` : devId(d),
        ...(o.ca ? { by: o.ca } : {}),
        ...(o.notBefore !== undefined ? { notBefore: o.notBefore } : {}),
        ...(o.notAfter !== undefined ? { notAfter: o.notAfter } : {}),
      }),
    async broken(kind) {
      const id = devId(`broken-${kind}`);
      const KU = x509.KeyUsageFlags;
      switch (kind) {
        case 'ca-true': {
          const c = await makeCert({
            subject: 'CN=broken-ca-true',
            uris: [id],
            ca: true,
            notBefore: nb,
            notAfter: now + life / 2,
            issuer: { cert: deviceCa.cert, key: deviceCa.key },
          });
          return issued(id, c.cert, c.key, [deviceCa.cert]);
        }
        case 'two-uris':
          return leaf({ id, uris: [id, devId('second')] });
        case 'no-uri':
          return leaf({ id, uris: [], dns: ['device.local'] });
        case 'wrong-ca': {
          const rogue = await makeCert({
            subject: 'CN=rogue',
            uris: [`spiffe://${td}`],
            ca: true,
            notBefore: nb,
            notAfter: now + life,
          });
          const c = await makeCert({
            subject: 'CN=wrong-ca',
            uris: [id],
            notBefore: nb,
            notAfter: now + life,
            issuer: rogue,
          });
          return issued(id, c.cert, c.key, [rogue.cert]);
        }
        case 'expired':
          return leaf({ id, notBefore: now - 3 * HOUR, notAfter: now - HOUR });
        case 'not-yet-valid':
          return leaf({ id, notBefore: now + HOUR, notAfter: now + 2 * HOUR });
        case 'other-gateway-path':
          // Signed by gw-2's delegated CA but claiming a device of gw-1.
          return leaf({ id, by: otherCa });
        case 'not-device-path':
          return leaf({ id: `${gwId}/service/x` });
        case 'no-key-usage':
          return leaf({ id, keyUsage: null });
        case 'key-usage-not-critical':
          return leaf({ id, keyUsageCritical: false });
        case 'key-cert-sign':
          return leaf({ id, keyUsage: KU.digitalSignature | KU.keyCertSign });
        case 'server-only-eku':
          return leaf({ id, eku: [OID_SERVER_AUTH] });
        case 'other-trust-domain': {
          const other = `spiffe://other.example/gateway/${gwName}/device/x`;
          return leaf({ id: other });
        }
        case 'expired-intermediate': {
          const old = await makeCert({
            subject: `CN=${gwName} old device CA`,
            uris: [gwId],
            ca: true,
            pathLength: 0,
            notBefore: now - 3 * HOUR,
            notAfter: now - HOUR,
            issuer: root,
          });
          const c = await makeCert({
            subject: 'CN=expired-intermediate',
            uris: [id],
            notBefore: now - 2 * HOUR,
            notAfter: now - HOUR - 1000,
            issuer: old,
          });
          return issued(id, c.cert, c.key, [old.cert]);
        }
      }
    },
    signer: (clock, ttlMs = HOUR) =>
      fixedDeviceSigner(
        {
          trustDomain: td,
          gatewayId: gwId,
          svidChain: gateway.chain,
          svidKey: gateway.key,
          caChain: [deviceCa.cert],
          caKey: deviceCa.key,
        },
        clock,
        seededRandom('test-pki-signer'),
        ttlMs,
      ),
  };
}

/** Write `key.pem` (0600), `svid.pem` (leaf + chain) and `bundle.pem` for mosquitto clients. */
export function writeIdentityFiles(
  dir: string,
  who: Issued,
  bundlePem: string,
): { cert: string; key: string; ca: string } {
  const files = { cert: join(dir, 'svid.pem'), key: join(dir, 'key.pem'), ca: join(dir, 'bundle.pem') };
  writeFileSync(files.key, who.pem.key, { mode: 0o600 });
  writeFileSync(files.cert, who.pem.cert);
  writeFileSync(files.ca, bundlePem);
  return files;
}
