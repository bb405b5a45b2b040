/**
 * The device side of EST (RFC 7030) enrollment, on `node:https`:
 *
 * 1. `cacerts` is fetched without verifying the gateway (RFC 7030 §4.1.1 bootstrap); one of the
 *    roots must have a SHA-256 fingerprint the join token carries (or the one provisioned
 *    with a factory certificate), else nothing more is sent (`ERR_ENROLL_GATEWAY_UNTRUSTED`);
 * 2. `simpleenroll` then goes over a connection verified against those roots, and the gateway's
 *    certificate must be an X.509-SVID `spiffe://<td>/gateway/<name>` (the host name is not
 *    what identifies a gateway); the token travels as HTTP Basic `device id : token`, or the
 *    factory certificate as the TLS client certificate;
 * 3. the answer (certs-only PKCS#7) must verify against the roots, be for our key and be
 *    `<gateway ID>/device/<device id>`.
 *
 * `reenroll` authenticates with the current device certificate (TLS client certificate) and
 * asks for a certificate for a new key. A refusal is a `TransportError` with the gateway's code
 * (`ERR_ENROLL_TOKEN_INVALID`, ...), read from the `CODE: reason` body.
 * One request and the reading of its answer are in est-request.ts.
 *
 * @example
 * ```ts
 * const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
 * const id = await enroll({ host: 'gw.local', port: 8884, deviceId: 'sensor-1', token, key, now: () => Date.now() });
 * const next = await reenroll({ host: 'gw.local', port: 8884, current: { key, chain: id.chain }, roots: id.roots, key: newKey, now });
 * ```
 */
import { createPublicKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { explicit, seq, TAG } from '../../runtime/spiffe/der.ts';
import { deviceSpiffeId, parseSpiffeId } from '../../runtime/spiffe/id.ts';
import { verifyX509Svid } from '../../runtime/spiffe/verify.ts';
import { createCsr } from '../../runtime/svid/csr.ts';
import { signatureAlgorithm, signTbs, spkiOf } from '../../runtime/svid/signer.ts';
import { TransportError } from '../errors.ts';
import { call, certsOf } from './est-request.ts';
import { bundleMatches, parseJoinToken } from './join-token.ts';
import { base64Lines } from './pkcs7.ts';

const EST = '/.well-known/est';

export interface EnrollOptions {
  readonly host: string;
  readonly port: number;
  /** The device's new private key (ECDSA P-256). */
  readonly key: KeyObject;
  /** The device id the join token was issued for (the HTTP Basic user name) ... */
  readonly deviceId?: string;
  /** ... and the join token (carries the bundle fingerprint) ... */
  readonly token?: string;
  /** ... or a factory certificate chain and key, plus the bundle fingerprint from provisioning. */
  readonly factory?: {
    readonly cert: string;
    readonly key: KeyObject;
    readonly bundleFingerprint: Uint8Array;
  };
  /**
   * Roots the device already trusts (provisioned with it): `cacerts` is then not fetched, and the
   * gateway must chain to these. Without it, the bootstrap of RFC 7030 §4.1.1 runs.
   */
  readonly roots?: readonly X509Certificate[];
  /** Current time, epoch ms (the device's clock). */
  readonly now: () => number;
  readonly timeoutMs?: number;
}

export interface ReenrollOptions {
  readonly host: string;
  readonly port: number;
  /** The identity in use: it authenticates the request. */
  readonly current: { readonly key: KeyObject; readonly chain: readonly X509Certificate[] };
  /** The roots the gateway's certificate must chain to (the device's bundle). */
  readonly roots: readonly X509Certificate[];
  /** The key to certify (a new one, or the current one). */
  readonly key: KeyObject;
  readonly now: () => number;
  readonly timeoutMs?: number;
}

export interface EnrolledIdentity {
  readonly spiffeId: string;
  readonly chain: readonly X509Certificate[];
  readonly roots: readonly X509Certificate[];
  readonly notAfter: number;
  readonly chainPem: string;
  readonly bundlePem: string;
}

/**
 * RFC 7030 §4.1.1 bootstrap: the gateway's CA certificates, fetched without verification and
 * accepted only when one of them has one of `fingerprints` (SHA-256 of its DER).
 */
export async function fetchCaCerts(o: {
  host: string;
  port: number;
  fingerprints: readonly Uint8Array[];
  timeoutMs?: number;
}): Promise<X509Certificate[]> {
  const roots = certsOf(
    await call({
      host: o.host,
      port: o.port,
      method: 'GET',
      path: `${EST}/cacerts`,
      timeoutMs: o.timeoutMs ?? 15_000,
    }),
  );
  if (
    !bundleMatches(
      o.fingerprints,
      roots.map((r) => r.raw),
    )
  )
    throw new TransportError(
      'ERR_ENROLL_GATEWAY_UNTRUSTED',
      'the gateway presented no bundle root with the expected fingerprint',
    );
  return roots;
}

/** The trust domain of a leaf's SPIFFE ID (its one URI SAN). */
function trustDomainOf(leaf: X509Certificate | undefined): string {
  const uri = /(?:^|, )URI:(spiffe:\/\/[^,]+)/.exec(leaf?.subjectAltName ?? '')?.[1];
  if (uri === undefined)
    throw new TransportError('ERR_ENROLL_GATEWAY_UNTRUSTED', 'the gateway certificate has no SPIFFE ID');
  return parseSpiffeId(uri).trustDomain;
}

/** Verify the gateway's chain as `spiffe://<td>/gateway/<name>` against `roots`; records its ID. */
function gatewayCheck(roots: readonly X509Certificate[], now: () => number, seen: { id?: string }) {
  return (chain: X509Certificate[]): void => {
    try {
      const trustDomain = trustDomainOf(chain[0]);
      const v = verifyX509Svid(chain, {
        now: now(),
        bundle: { trustDomain, roots, sequence: 0 },
        purpose: 'server',
      });
      const gw = parseSpiffeId(v.spiffeId);
      if (gw.segments.length !== 2 || gw.segments[0] !== 'gateway')
        throw new Error(`${v.spiffeId} is not a gateway identity`);
      seen.id = v.spiffeId;
    } catch (cause) {
      throw new TransportError(
        'ERR_ENROLL_GATEWAY_UNTRUSTED',
        `gateway certificate refused: ${(cause as Error).message}`,
        {
          cause,
        },
      );
    }
  };
}

/** Check an issued chain: our key, verifies against `roots`, `<gateway ID>/device/<id>`. */
function identityOf(
  chain: X509Certificate[],
  roots: readonly X509Certificate[],
  key: KeyObject,
  gatewayId: string | undefined,
  deviceId: string | undefined,
  now: number,
): EnrolledIdentity {
  const mine = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const got = (chain[0] as X509Certificate).publicKey.export({ type: 'spki', format: 'der' });
  if (!mine.equals(got))
    throw new TransportError('ERR_ENROLL_PROTOCOL', 'the issued certificate is not for our key');
  if (gatewayId === undefined)
    throw new TransportError('ERR_ENROLL_GATEWAY_UNTRUSTED', 'the gateway was not verified');
  const gw = parseSpiffeId(gatewayId);
  const v = verifyX509Svid(chain, { now, bundle: { trustDomain: gw.trustDomain, roots, sequence: 0 } });
  const issuedId = v.spiffeId.split('/').pop() as string;
  if (v.spiffeId !== deviceSpiffeId(gatewayId, issuedId) || (deviceId !== undefined && issuedId !== deviceId))
    throw new TransportError(
      'ERR_ENROLL_PROTOCOL',
      `issued ${v.spiffeId} is not ${deviceId ?? 'a device'} of ${gatewayId}`,
    );
  return {
    spiffeId: v.spiffeId,
    chain,
    roots,
    notAfter: v.notAfter,
    chainPem: chain.map((c) => c.toString()).join(''),
    bundlePem: roots.map((c) => c.toString()).join(''),
  };
}

/**
 * A CSR for `key` naming `commonName`, or nothing at all (an empty subject) when the device does
 * not know its id (factory enrollment: the gateway reads it from the factory certificate).
 */
function csrFor(key: KeyObject, commonName: string | undefined): Buffer {
  if (commonName !== undefined) return createCsr(key, commonName);
  const info = seq(Buffer.from([TAG.INTEGER, 1, 0]), seq(), spkiOf(key), explicit(0));
  return signTbs(info, key, signatureAlgorithm(key));
}

function wrapped(err: unknown): never {
  if (isEdgewardError(err)) throw err;
  throw new TransportError('ERR_ENROLL_PROTOCOL', `enrollment failed: ${(err as Error).message}`, {
    cause: err,
  });
}

/**
 * POST a CSR for `o.key` to `op` over a connection verified against `roots` (the gateway by its
 * SPIFFE ID), authenticated by `auth` (HTTP Basic headers or a TLS client certificate); the
 * issued chain must be ours (identityOf).
 */
async function requestChain(
  o: { host: string; port: number; key: KeyObject; now: () => number; timeoutMs: number },
  op: 'simpleenroll' | 'simplereenroll',
  roots: readonly X509Certificate[],
  deviceId: string | undefined,
  auth: { headers?: Record<string, string>; cert?: string; key?: KeyObject },
): Promise<EnrolledIdentity> {
  const seen: { id?: string } = {};
  const chain = certsOf(
    await call({
      host: o.host,
      port: o.port,
      method: 'POST',
      path: `${EST}/${op}`,
      headers: {
        'Content-Type': 'application/pkcs10',
        'Content-Transfer-Encoding': 'base64',
        ...auth.headers,
      },
      body: base64Lines(csrFor(o.key, deviceId)),
      ca: roots.map((r) => r.toString()).join(''),
      checkGateway: gatewayCheck(roots, o.now, seen),
      ...(auth.cert === undefined || auth.key === undefined ? {} : { cert: auth.cert, key: auth.key }),
      timeoutMs: o.timeoutMs,
    }),
  );
  return identityOf(chain, roots, o.key, seen.id, deviceId, o.now());
}

/** Bootstrap trust from the token's fingerprint (or the factory one), then `simpleenroll`. */
export async function enroll(o: EnrollOptions): Promise<EnrolledIdentity> {
  const fingerprints =
    o.token !== undefined
      ? parseJoinToken(o.token).fingerprints
      : o.factory !== undefined
        ? [Buffer.from(o.factory.bundleFingerprint)]
        : undefined;
  if (fingerprints === undefined) throw new TypeError('enroll needs a token or a factory identity');
  if (o.token !== undefined && o.deviceId === undefined)
    throw new TypeError('enroll with a token needs the device id');
  const timeoutMs = o.timeoutMs ?? 15_000;
  try {
    const roots = o.roots ?? (await fetchCaCerts({ host: o.host, port: o.port, fingerprints, timeoutMs }));
    return await requestChain({ ...o, timeoutMs }, 'simpleenroll', roots, o.deviceId, {
      ...(o.token === undefined
        ? {}
        : {
            headers: { Authorization: `Basic ${Buffer.from(`${o.deviceId}:${o.token}`).toString('base64')}` },
          }),
      ...(o.factory === undefined ? {} : { cert: o.factory.cert, key: o.factory.key }),
    });
  } catch (err) {
    wrapped(err);
  }
}

/** `simplereenroll` with the current identity: a new certificate (same SPIFFE ID) for `key`. */
export async function reenroll(o: ReenrollOptions): Promise<EnrolledIdentity> {
  try {
    const leaf = o.current.chain[0];
    const deviceId =
      leaf === undefined
        ? undefined
        : (/(?:^|, )URI:(spiffe:\/\/[^,]+)/.exec(leaf.subjectAltName ?? '')?.[1] ?? '').split('/').pop();
    return await requestChain(
      { ...o, timeoutMs: o.timeoutMs ?? 15_000 },
      'simplereenroll',
      o.roots,
      deviceId || undefined,
      { cert: o.current.chain.map((c) => c.toString()).join(''), key: o.current.key },
    );
  } catch (err) {
    wrapped(err);
  }
}
