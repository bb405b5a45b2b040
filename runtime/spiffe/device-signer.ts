/**
 * A `DeviceSigner` over a delegated device CA held in memory: it checks a device's PKCS#10 CSR
 * (parses, self-signature valid, ECDSA P-256 key) and issues `<gatewayId>/device/<deviceId>`
 * X.509-SVIDs that never outlive the CA. The agent builds one from its current delegated CA (and
 * rebuilds it on rotation); tests build one from the test PKI.
 *
 * @example
 * ```ts
 * const signer = new CaDeviceSigner({ gatewayId, caChain: [caCert], caKey, clock, random, ttlMs: 3_600_000 });
 * const { chain, notAfter } = await signer.signDevice({ deviceId: 'sensor-1', csrDer });
 * ```
 */
import { KeyObject, type webcrypto, X509Certificate } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import type { Random } from '../core/random.ts';
import { SpiffeError } from '../errors.ts';
import type { DeviceSigner } from '../sources/types.ts';
import { deviceSpiffeId } from './id.ts';

export interface CaDeviceSignerOptions {
  readonly gatewayId: string;
  /** The delegated CA first, then its intermediates (not the root). */
  readonly caChain: readonly X509Certificate[];
  readonly caKey: KeyObject | webcrypto.CryptoKey;
  readonly clock: Clock;
  readonly random: Random;
  /** Lifetime of issued SVIDs (clamped to the CA's NotAfter); default 1 h. */
  readonly ttlMs?: number;
  /** Upper bound for a requested `ttlMs`; default 24 h. */
  readonly maxTtlMs?: number;
}

/** Parse a CSR and check its self-signature and key type; returns the SPKI DER. */
export async function checkCsr(csrDer: Uint8Array): Promise<Uint8Array> {
  // Loaded on first use: a gateway that signs nothing never pays for the ASN.1 library.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  let csr: InstanceType<typeof x509.Pkcs10CertificateRequest>;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrDer);
  } catch (cause) {
    throw new SpiffeError('ERR_CSR_INVALID', 'CSR does not parse as PKCS#10', { cause });
  }
  const alg = csr.publicKey.algorithm as { name: string; namedCurve?: string };
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') {
    throw new SpiffeError('ERR_CSR_INVALID', 'CSR key must be ECDSA P-256');
  }
  let ok = false;
  try {
    ok = await csr.verify();
  } catch (cause) {
    throw new SpiffeError('ERR_CSR_INVALID', 'CSR signature cannot be checked', { cause });
  }
  if (!ok) throw new SpiffeError('ERR_CSR_INVALID', 'CSR signature is not valid');
  return new Uint8Array(csr.publicKey.rawData);
}

export class CaDeviceSigner implements DeviceSigner {
  readonly gatewayId: string;
  readonly #o: CaDeviceSignerOptions;
  #key: Promise<webcrypto.CryptoKey> | undefined;

  constructor(options: CaDeviceSignerOptions) {
    if (options.caChain.length === 0) throw new TypeError('caChain must hold the delegated CA');
    this.gatewayId = options.gatewayId;
    this.#o = options;
  }

  async signDevice(request: {
    deviceId: string;
    csrDer: Uint8Array;
    ttlMs?: number;
  }): Promise<{ chain: readonly Uint8Array[]; notAfter: number }> {
    const o = this.#o;
    const spiffeId = deviceSpiffeId(this.gatewayId, request.deviceId);
    const spki = await checkCsr(request.csrDer);
    const { issueSvid, toSigningKey } = await import('./issue.ts');
    const ca = o.caChain[0] as X509Certificate;
    const now = o.clock.now();
    const caNotAfter = Math.min(...o.caChain.map((c) => Date.parse(c.validTo)));
    if (now >= caNotAfter)
      throw new SpiffeError('ERR_SVID_UNAVAILABLE', 'the delegated device CA has expired');
    const ttl = Math.min(request.ttlMs ?? o.ttlMs ?? 3_600_000, o.maxTtlMs ?? 86_400_000);
    const notAfter = Math.min(now + ttl, caNotAfter);
    const serial = o.random.bytes(16);
    serial[0] = ((serial[0] as number) & 0x7f) | 0x01;
    this.#key ??= o.caKey instanceof KeyObject ? toSigningKey(o.caKey) : Promise.resolve(o.caKey);
    const leaf = await issueSvid({
      spiffeId,
      publicKeySpki: spki,
      issuer: ca,
      issuerKey: await this.#key,
      // One minute of back-dating tolerates device clocks slightly behind the gateway's.
      notBefore: now - 60_000,
      notAfter,
      serialHex: serial.toString('hex'),
    });
    return {
      chain: [leaf, ...o.caChain.map((c) => new Uint8Array(c.raw))],
      notAfter: Date.parse(new X509Certificate(leaf).validTo),
    };
  }
}
