/**
 * The agent's `DeviceSigner`: device X.509-SVIDs signed locally with the delegated CA, also
 * while the upstream is unreachable. Rules:
 * - the clock must be trusted (not behind the time floor): `ERR_CLOCK_UNTRUSTED` otherwise;
 * - a delegated CA valid now is needed: `ERR_SVID_UNAVAILABLE` otherwise;
 * - the device id is one SPIFFE path segment (`ERR_DEVICE_ID_INVALID`), the CSR parses, its
 *   self-signature verifies and its key is strong (`ERR_DEVICE_CSR_INVALID`);
 * - the SVID is `<gateway ID>/device/<id>`, lives `broker.deviceSvidTtl` (default 1 h, at most
 *   30 d) and never outlives the CA (the signer clamps it).
 * Each issuance is recorded in the store (`device/<id>`) before the chain is returned.
 *
 * The gateway's local server certificate (`server-identity.ts`) is signed here too, by the same
 * signer, so wherever the delegated CA key lives the server certificate follows it: URI SAN =
 * the gateway's own ID (= the CA's), EKU serverAuth only, never past the CA.
 *
 * Signing uses `runtime/svid`'s DER-template signer, rebuilt when the CA rotates; the signature
 * goes through the CA key seam (software key, or TPM2_Sign when the CA key is in the TPM).
 */
import type { X509Certificate } from 'node:crypto';
import { isEdgewardError } from '../core/error.ts';
import type { Random } from '../core/random.ts';
import { AgentError, RuntimeError } from '../errors.ts';
import type { DeviceSigner } from '../sources/types.ts';
import { isPathSegment } from '../spiffe/id.ts';
import type { DeviceRecord } from '../store/records.ts';
import { parseCsr } from '../svid/csr.ts';
import { type AsyncSvidSigner, createCaSigner, type SignedCertificate } from '../svid/signer.ts';
import type { LiveIdentity } from './identity.ts';

export const DEFAULT_DEVICE_TTL_MS = 60 * 60_000;
/** The longest device SVID lifetime `broker.deviceSvidTtl` may ask for (30 days). */
export const MAX_DEVICE_TTL_MS = 30 * 24 * 60 * 60_000;

/** A server certificate just signed under the delegated CA of `live`. */
export interface SignedServerCertificate {
  readonly live: LiveIdentity;
  readonly issued: SignedCertificate;
  /** Leaf, delegated CA and what is above it, without the self-signed root. */
  readonly chain: readonly Uint8Array[];
}

export interface DeviceSignerHost {
  readonly trustDomain: string;
  readonly random: Random;
  /** The loaded identity whose delegated CA is valid now, if any. */
  caIdentity(): LiveIdentity | undefined;
  clockTrusted(): boolean;
  now(): number;
  recordDevice(rec: DeviceRecord): Promise<void>;
}

/**
 * The delegated CA to sign with now, for every local signer (devices, the local server
 * certificate, workloads): `ERR_CLOCK_UNTRUSTED` while the clock is behind the time floor,
 * `ERR_SVID_UNAVAILABLE` when no delegated CA is valid.
 */
export function signingCa(host: Pick<DeviceSignerHost, 'clockTrusted' | 'caIdentity'>): LiveIdentity {
  if (!host.clockTrusted())
    throw new AgentError(
      'ERR_CLOCK_UNTRUSTED',
      'the clock is behind the time floor: no signing until it is sane',
    );
  const live = host.caIdentity();
  if (live === undefined)
    throw new RuntimeError('ERR_SVID_UNAVAILABLE', 'no valid delegated CA to sign with');
  return live;
}

export class AgentDeviceSigner implements DeviceSigner {
  readonly #host: DeviceSignerHost;
  readonly #ttlMs: number;
  #cached: { live: LiveIdentity; signer: AsyncSvidSigner } | undefined;

  constructor(host: DeviceSignerHost, ttlMs = DEFAULT_DEVICE_TTL_MS) {
    if (!(ttlMs > 0 && ttlMs <= MAX_DEVICE_TTL_MS))
      throw new TypeError(`device SVID ttl must be > 0 and at most ${MAX_DEVICE_TTL_MS} ms`);
    this.#host = host;
    this.#ttlMs = ttlMs;
  }

  get gatewayId(): string {
    const live = this.#host.caIdentity();
    if (live === undefined) throw new RuntimeError('ERR_SVID_UNAVAILABLE', 'no valid delegated CA');
    return live.svid.spiffeId;
  }

  async signDevice(request: { deviceId: string; csrDer: Uint8Array; ttlMs?: number }): Promise<{
    chain: readonly Uint8Array[];
    notAfter: number;
  }> {
    const live = signingCa(this.#host);
    const { deviceId } = request;
    if (typeof deviceId !== 'string' || deviceId.length > 64 || !isPathSegment(deviceId))
      throw new AgentError(
        'ERR_DEVICE_ID_INVALID',
        'device id must be 1-64 of letters, digits, ".", "-", "_"',
        {
          deviceId: String(deviceId).slice(0, 80),
        },
      );
    let spki: Uint8Array;
    try {
      spki = parseCsr(request.csrDer).spki;
    } catch (cause) {
      const code = isEdgewardError(cause) ? cause.code : 'unknown';
      throw new AgentError(
        'ERR_DEVICE_CSR_INVALID',
        `device CSR refused (${code})`,
        { deviceId, reason: code },
        { cause },
      );
    }
    const ttl = Math.min(request.ttlMs ?? this.#ttlMs, MAX_DEVICE_TTL_MS);
    if (!(ttl > 0)) throw new TypeError('ttlMs must be positive');
    const now = this.#host.now();
    const spiffeId = `${live.svid.spiffeId}/device/${deviceId}`;
    const issued = await this.#signer(live).issue({
      profile: 'svid',
      spiffeId,
      spki,
      notBefore: now,
      notAfter: now + ttl,
    });
    await this.#host.recordDevice({
      deviceId,
      spiffeId,
      serial: issued.serialHex,
      notAfter: issued.notAfter,
      issuedAt: now,
    });
    return { chain: [issued.der, ...live.ca.chainDer], notAfter: issued.notAfter };
  }

  /**
   * Sign the gateway's local server certificate for `spki` (`server-identity.ts`): valid from now
   * for `ttlMs`, clamped to the delegated CA. Same refusals as `signDevice` for the clock and CA.
   */
  async signServer(request: {
    spki: Uint8Array;
    ttlMs: number;
    serverNames: readonly string[];
  }): Promise<SignedServerCertificate> {
    const live = signingCa(this.#host);
    if (!(request.ttlMs > 0)) throw new TypeError('ttlMs must be positive');
    const now = this.#host.now();
    const issued = await this.#signer(live).issue({
      profile: 'server',
      spiffeId: live.svid.spiffeId,
      spki: request.spki,
      notBefore: now,
      notAfter: now + request.ttlMs,
      serverNames: request.serverNames,
    });
    const above = live.ca.chain.filter((c, i) => i === 0 || !selfSigned(c));
    return { live, issued, chain: [issued.der, ...above.map((c) => c.raw)] };
  }

  #signer(live: LiveIdentity): AsyncSvidSigner {
    if (this.#cached?.live !== live) {
      const signer = createCaSigner({
        certificate: live.ca.chainDer[0] as Uint8Array,
        key: live.ca.key,
        trustDomain: this.#host.trustDomain,
        random: this.#host.random,
        scope: `${live.svid.spiffeId}/device`,
        serverId: live.svid.spiffeId,
        profiles: ['svid', 'server'],
      });
      this.#cached = { live, signer };
    }
    return this.#cached.signer;
  }
}

function selfSigned(c: X509Certificate): boolean {
  try {
    return c.checkIssued(c) && c.verify(c.publicKey);
  } catch {
    return false;
  }
}
