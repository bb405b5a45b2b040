/**
 * The X.509-SVIDs of registered workloads: `spiffe://<td>/gateway/<gw>/workload/<name>`, signed
 * locally by the gateway's delegated CA through the same `CaKey` signer the device SVIDs use
 * (`createCaSigner`, scoped to `<gateway ID>/workload`), so the CA key may be in the TPM.
 *
 * One key pair and SVID per entry name, shared by every workload entitled to that entry, reused
 * until half of its lifetime has passed or the delegated CA changed; then a fresh key and SVID.
 * Concurrent requests for the same name share one signing.
 */
import { generateKeyPairSync } from 'node:crypto';
import { signingCa } from '../agent/device-signer.ts';
import type { LiveIdentity } from '../agent/identity.ts';
import type { Random } from '../core/random.ts';
import type { X509Bundle } from '../sources/types.ts';
import type { JwtAuthority } from '../svid/jwt-svid.ts';
import { type AsyncSvidSigner, createCaSigner } from '../svid/signer.ts';

export const DEFAULT_WORKLOAD_TTL_MS = 60 * 60_000;

/** What the Workload API needs from the agent. */
export interface WorkloadHost {
  readonly trustDomain: string;
  readonly random: Random;
  /** The loaded identity whose delegated CA is valid now, if any. */
  caIdentity(): LiveIdentity | undefined;
  /** The trust domain's X.509 bundle, if known. */
  bundle(): X509Bundle | undefined;
  clockTrusted(): boolean;
  now(): number;
  /**
   * The trust domain's JWT-SVID keys, from the bundle the agent holds (undefined: no bundle).
   * A host without the two JWT members (an embedding with no upstream) answers the JWT calls
   * UNAVAILABLE.
   */
  jwtKeys?(): readonly JwtAuthority[] | undefined;
  /** A JWT-SVID from the issuer for one of this gateway's workloads (the server caches it). */
  fetchJwtSvid?(spiffeId: string, audience: readonly string[]): Promise<{ token: string; expiresAt: number }>;
  /** Called after the gateway identity (delegated CA) or the bundle changed. */
  onChange(listener: () => void): () => void;
}

export interface WorkloadSvid {
  readonly spiffeId: string;
  /** Leaf first, then the delegated CA chain (DER). */
  readonly chain: readonly Buffer[];
  /** PKCS#8 DER. */
  readonly key: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
  /** When a fresh SVID replaces this one (half-life). */
  readonly refreshAt: number;
}

export function workloadId(gatewayId: string, name: string): string {
  return `${gatewayId}/workload/${name}`;
}

export class WorkloadSvids {
  readonly #host: WorkloadHost;
  readonly #ttlMs: number;
  readonly #cache = new Map<string, { live: LiveIdentity; svid: WorkloadSvid }>();
  readonly #pending = new Map<string, Promise<WorkloadSvid>>();
  #signer: { live: LiveIdentity; signer: AsyncSvidSigner } | undefined;

  constructor(host: WorkloadHost, ttlMs = DEFAULT_WORKLOAD_TTL_MS) {
    if (!(ttlMs > 0)) throw new TypeError('ttlMs must be positive');
    this.#host = host;
    this.#ttlMs = ttlMs;
  }

  /** The current SVID for entry `name`; signs one when none is fresh. */
  async get(name: string): Promise<WorkloadSvid> {
    const live = this.#live();
    const now = this.#host.now();
    const hit = this.#cache.get(name);
    if (hit !== undefined && hit.live === live && now < hit.svid.refreshAt) return hit.svid;
    const pending = this.#pending.get(name);
    if (pending !== undefined) return pending;
    const p = this.#sign(name, live).finally(() => this.#pending.delete(name));
    this.#pending.set(name, p);
    return p;
  }

  /** Forget SVIDs of names no longer registered. */
  retain(names: ReadonlySet<string>): void {
    for (const n of this.#cache.keys()) if (!names.has(n)) this.#cache.delete(n);
  }

  #live(): LiveIdentity {
    return signingCa(this.#host);
  }

  async #sign(name: string, live: LiveIdentity): Promise<WorkloadSvid> {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const now = this.#host.now();
    const spiffeId = workloadId(live.svid.spiffeId, name);
    const issued = await this.#signerFor(live).issue({
      profile: 'svid',
      spiffeId,
      spki: publicKey.export({ type: 'spki', format: 'der' }),
      notBefore: now,
      notAfter: now + this.#ttlMs,
    });
    const svid: WorkloadSvid = {
      spiffeId,
      chain: [issued.der, ...live.ca.chainDer.map((d) => Buffer.from(d))],
      key: privateKey.export({ type: 'pkcs8', format: 'der' }),
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
      refreshAt: now + Math.max(1_000, Math.floor((issued.notAfter - now) / 2)),
    };
    this.#cache.set(name, { live, svid });
    return svid;
  }

  #signerFor(live: LiveIdentity): AsyncSvidSigner {
    if (this.#signer?.live !== live) {
      const signer = createCaSigner({
        certificate: live.ca.chainDer[0] as Uint8Array,
        key: live.ca.key,
        trustDomain: this.#host.trustDomain,
        random: this.#host.random,
        scope: `${live.svid.spiffeId}/workload`,
        profiles: ['svid'],
      });
      this.#signer = { live, signer };
    }
    return this.#signer.signer;
  }
}
