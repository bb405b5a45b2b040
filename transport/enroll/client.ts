/**
 * The device side of enrollment: connect to the gateway's enrollment listener, authenticate the
 * gateway (a bundle root with the expected fingerprint, and the gateway's certificate verified as
 * an X.509-SVID `spiffe://<td>/gateway/<name>` against that root) before sending anything, then
 * send a CSR and check what comes back (the chain verifies, its key is ours).
 *
 * @example
 * ```ts
 * const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
 * const id = await enroll({ host: 'gw.local', port: 8884, token, key, now: () => Date.now() });
 * id.chainPem; id.bundlePem; id.spiffeId;
 * ```
 */
import { createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { connect, type TLSSocket } from 'node:tls';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { parseSpiffeId } from '../../runtime/spiffe/id.ts';
import { verifyX509Svid } from '../../runtime/spiffe/verify.ts';
import { createCsr } from '../../runtime/svid/csr.ts';
import { TransportError } from '../errors.ts';
import { peerChain } from '../mqtt/peer-chain.ts';
import { bundleMatches, parseJoinToken } from './join-token.ts';
import { asAnswer, asHello, FrameReader, writeFrame } from './wire.ts';

export interface EnrollOptions {
  readonly host: string;
  readonly port: number;
  /** The device's new private key (ECDSA P-256). */
  readonly key: KeyObject;
  /** A join token (carries the bundle fingerprint) ... */
  readonly token?: string;
  /** ... or a factory certificate chain and key, plus the bundle fingerprint from provisioning. */
  readonly factory?: {
    readonly cert: string;
    readonly key: KeyObject;
    readonly bundleFingerprint: Uint8Array;
  };
  /** Current time, epoch ms (the device's clock). */
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

const KNOWN = [
  'ERR_ENROLL_TOKEN_INVALID',
  'ERR_ENROLL_RATE_LIMITED',
  'ERR_ENROLL_FACTORY_REFUSED',
  'ERR_ENROLL_PROTOCOL',
  'ERR_ENROLL_DEVICE_REVOKED',
  'ERR_ENROLL_BUDGET',
];

function refused(error: { code: string; message: string }): never {
  throw new TransportError(
    (KNOWN.includes(error.code) ? error.code : 'ERR_ENROLL_REFUSED') as 'ERR_ENROLL_REFUSED',
    `gateway refused enrollment: ${error.code}: ${error.message}`,
  );
}

export async function enroll(o: EnrollOptions): Promise<EnrolledIdentity> {
  const fingerprint =
    o.token !== undefined
      ? parseJoinToken(o.token).fingerprint
      : o.factory !== undefined
        ? Buffer.from(o.factory.bundleFingerprint)
        : undefined;
  if (fingerprint === undefined) throw new TypeError('enroll needs a token or a factory identity');
  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const s = connect({
      host: o.host,
      port: o.port,
      // The gateway is authenticated below, against the fingerprint, before anything is sent.
      rejectUnauthorized: false,
      ...(o.factory === undefined
        ? {}
        : { cert: o.factory.cert, key: o.factory.key.export({ type: 'pkcs8', format: 'pem' }) }),
    });
    s.once('secureConnect', () => resolve(s));
    s.once('error', (err) =>
      reject(new TransportError('ERR_ENROLL_PROTOCOL', `cannot reach ${o.host}:${o.port}: ${err.message}`)),
    );
  });
  socket.setTimeout(o.timeoutMs ?? 15_000, () => socket.destroy(new Error('timed out')));
  try {
    const reader = new FrameReader(socket);
    const first = await reader.next();
    if (typeof first === 'object' && first !== null && 'error' in first) {
      const a = asAnswer(first);
      if ('error' in a) refused(a.error);
    }
    const hello = asHello(first);
    if (!bundleMatches(fingerprint, hello.roots)) {
      throw new TransportError(
        'ERR_ENROLL_GATEWAY_UNTRUSTED',
        'the gateway presented no bundle root with the expected fingerprint',
      );
    }
    const roots = hello.roots.map((r) => new X509Certificate(r));
    const bundle = { trustDomain: hello.trustDomain, roots, sequence: 0 };
    const server = (() => {
      try {
        return verifyX509Svid(peerChain(socket), { now: o.now(), bundle, purpose: 'server' });
      } catch (cause) {
        throw new TransportError(
          'ERR_ENROLL_GATEWAY_UNTRUSTED',
          `gateway certificate refused: ${(cause as Error).message}`,
          { cause },
        );
      }
    })();
    const gw = parseSpiffeId(server.spiffeId);
    if (gw.segments.length !== 2 || gw.segments[0] !== 'gateway') {
      throw new TransportError(
        'ERR_ENROLL_GATEWAY_UNTRUSTED',
        `${server.spiffeId} is not a gateway identity`,
      );
    }
    const csr = createCsr(o.key, 'device');
    writeFrame(
      socket,
      o.token !== undefined ? { method: 'token', token: o.token, csr } : { method: 'factory', csr },
    );
    const answer = asAnswer(await reader.next());
    if ('error' in answer) refused(answer.error);
    const chain = answer.chain.map((d) => new X509Certificate(d));
    const newRoots = answer.roots.map((d) => new X509Certificate(d));
    const mine = createPublicKey(o.key).export({ type: 'spki', format: 'der' });
    const got = (chain[0] as X509Certificate).publicKey.export({ type: 'spki', format: 'der' });
    if (!mine.equals(got))
      throw new TransportError('ERR_ENROLL_PROTOCOL', 'the issued certificate is not for our key');
    const verified = verifyX509Svid(chain, { now: o.now(), bundle: { ...bundle, roots: newRoots } });
    if (
      parseSpiffeId(verified.spiffeId).id !==
      `${server.spiffeId}/device/${verified.spiffeId.split('/').pop()}`
    ) {
      throw new TransportError(
        'ERR_ENROLL_PROTOCOL',
        `issued ${verified.spiffeId} is not a device of ${server.spiffeId}`,
      );
    }
    return {
      spiffeId: verified.spiffeId,
      chain,
      roots: newRoots,
      notAfter: verified.notAfter,
      chainPem: chain.map((c) => c.toString()).join(''),
      bundlePem: newRoots.map((c) => c.toString()).join(''),
    };
  } catch (err) {
    if (isEdgewardError(err)) throw err;
    throw new TransportError('ERR_ENROLL_PROTOCOL', `enrollment failed: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    socket.destroy();
  }
}
