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
 *
 * @example
 * ```ts
 * const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
 * const id = await enroll({ host: 'gw.local', port: 8884, deviceId: 'sensor-1', token, key, now: () => Date.now() });
 * const next = await reenroll({ host: 'gw.local', port: 8884, current: { key, chain: id.chain }, roots: id.roots, key: newKey, now });
 * ```
 */
import { createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { explicit, seq, TAG } from '../../runtime/spiffe/der.ts';
import { deviceSpiffeId, parseSpiffeId } from '../../runtime/spiffe/id.ts';
import { verifyX509Svid } from '../../runtime/spiffe/verify.ts';
import { createCsr } from '../../runtime/svid/csr.ts';
import { signatureAlgorithm, signTbs, spkiOf } from '../../runtime/svid/signer.ts';
import { TransportError, type TransportErrorCode } from '../errors.ts';
import { bundleMatches, parseJoinToken } from './join-token.ts';
import { base64Lines, decodeBase64Body, parseCertsOnly } from './pkcs7.ts';

const EST = '/.well-known/est';
/** Largest answer read from a gateway (a chain of a few certificates is a few KiB). */
const MAX_ANSWER_BYTES = 64 * 1024;

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

/** Codes a gateway answers with that keep their meaning on the device. */
const KNOWN: readonly TransportErrorCode[] = [
  'ERR_ENROLL_TOKEN_INVALID',
  'ERR_ENROLL_RATE_LIMITED',
  'ERR_ENROLL_FACTORY_REFUSED',
  'ERR_ENROLL_PROTOCOL',
  'ERR_ENROLL_DEVICE_REVOKED',
  'ERR_ENROLL_BUDGET',
  'ERR_ENROLL_CSR_INVALID',
  'ERR_ENROLL_CSR_IDENTITY',
  'ERR_ENROLL_CERT_REQUIRED',
];

interface Answer {
  readonly status: number;
  readonly type: string;
  readonly body: Buffer;
}

interface Call {
  readonly host: string;
  readonly port: number;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** PEM roots to verify the gateway against; none = not verified (the bootstrap `cacerts`). */
  readonly ca?: string;
  /** Called with the gateway's chain (leaf first) before anything is sent; throws to refuse. */
  readonly checkGateway?: (chain: X509Certificate[]) => void;
  readonly cert?: string;
  readonly key?: KeyObject;
  readonly timeoutMs: number;
}

function chainOf(peer: PeerCertificate): X509Certificate[] {
  const out: X509Certificate[] = [];
  let c: PeerCertificate | undefined = peer;
  while (c?.raw !== undefined && out.length < 8) {
    out.push(new X509Certificate(c.raw));
    const next: PeerCertificate | undefined = (c as { issuerCertificate?: PeerCertificate })
      .issuerCertificate;
    if (next === undefined || next === c || next.fingerprint256 === c.fingerprint256) break;
    c = next;
  }
  return out;
}

function call(c: Call): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: c.host,
        port: c.port,
        method: c.method,
        path: c.path,
        headers: {
          ...c.headers,
          Connection: 'close',
          ...(c.body === undefined ? {} : { 'Content-Length': String(Buffer.byteLength(c.body)) }),
        },
        agent: false,
        minVersion: 'TLSv1.2',
        ...(c.ca === undefined
          ? { rejectUnauthorized: false }
          : {
              ca: c.ca,
              rejectUnauthorized: true,
              // The gateway is identified by its SPIFFE ID, not by the host name it is reached at.
              checkServerIdentity: (_host: string, peer: PeerCertificate) => {
                try {
                  c.checkGateway?.(chainOf(peer));
                  return undefined;
                } catch (err) {
                  return err as Error;
                }
              },
            }),
        ...(c.cert === undefined || c.key === undefined
          ? {}
          : { cert: c.cert, key: c.key.export({ type: 'pkcs8', format: 'pem' }) }),
      },
      (res: IncomingMessage) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => {
          size += d.length;
          if (size > MAX_ANSWER_BYTES) {
            req.destroy(new TransportError('ERR_ENROLL_PROTOCOL', `answer over ${MAX_ANSWER_BYTES} bytes`));
            return;
          }
          parts.push(d);
        });
        res.once('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            type: String(res.headers['content-type'] ?? ''),
            body: Buffer.concat(parts),
          }),
        );
        res.once('error', reject);
      },
    );
    req.setTimeout(c.timeoutMs, () =>
      req.destroy(
        new TransportError('ERR_ENROLL_PROTOCOL', `no answer from ${c.host}:${c.port} in ${c.timeoutMs} ms`),
      ),
    );
    req.once('error', (err) => {
      if (isEdgewardError(err)) reject(err);
      else
        reject(
          new TransportError('ERR_ENROLL_PROTOCOL', `cannot reach ${c.host}:${c.port}: ${err.message}`, {
            cause: err,
          }),
        );
    });
    req.end(c.body);
  });
}

/** The certificates of a 200 certs-only answer, or the gateway's refusal as a typed error. */
function certsOf(a: Answer): X509Certificate[] {
  if (a.status !== 200) {
    const text = a.body.toString('utf8').slice(0, 500).trim();
    const m = /^(ERR_[A-Z0-9_]+): (.*)$/s.exec(text);
    const code = m?.[1] as TransportErrorCode | undefined;
    throw new TransportError(
      code !== undefined && KNOWN.includes(code) ? code : 'ERR_ENROLL_REFUSED',
      `gateway refused enrollment (HTTP ${a.status}): ${text}`,
    );
  }
  if (!/^application\/pkcs7-mime\b/i.test(a.type))
    throw new TransportError(
      'ERR_ENROLL_PROTOCOL',
      `answer is ${a.type || 'untyped'}, not application/pkcs7-mime`,
    );
  return parseCertsOnly(decodeBase64Body(a.body)).map((d) => new X509Certificate(d));
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
    const seen: { id?: string } = {};
    const chain = certsOf(
      await call({
        host: o.host,
        port: o.port,
        method: 'POST',
        path: `${EST}/simpleenroll`,
        headers: {
          'Content-Type': 'application/pkcs10',
          'Content-Transfer-Encoding': 'base64',
          ...(o.token === undefined
            ? {}
            : { Authorization: `Basic ${Buffer.from(`${o.deviceId}:${o.token}`).toString('base64')}` }),
        },
        body: base64Lines(csrFor(o.key, o.deviceId)),
        ca: roots.map((r) => r.toString()).join(''),
        checkGateway: gatewayCheck(roots, o.now, seen),
        ...(o.factory === undefined ? {} : { cert: o.factory.cert, key: o.factory.key }),
        timeoutMs,
      }),
    );
    return identityOf(chain, roots, o.key, seen.id, o.deviceId, o.now());
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
    const seen: { id?: string } = {};
    const chain = certsOf(
      await call({
        host: o.host,
        port: o.port,
        method: 'POST',
        path: `${EST}/simplereenroll`,
        headers: { 'Content-Type': 'application/pkcs10', 'Content-Transfer-Encoding': 'base64' },
        body: base64Lines(csrFor(o.key, deviceId || undefined)),
        ca: o.roots.map((r) => r.toString()).join(''),
        checkGateway: gatewayCheck(o.roots, o.now, seen),
        cert: o.current.chain.map((c) => c.toString()).join(''),
        key: o.current.key,
        timeoutMs: o.timeoutMs ?? 15_000,
      }),
    );
    return identityOf(chain, o.roots, o.key, seen.id, deviceId || undefined, o.now());
  } catch (err) {
    wrapped(err);
  }
}
