/**
 * Static implementations of the identity sources: an SVID, bundles and a revocation set held in
 * memory and changed by calling `set`/`revoke`. Tests, the CLI's offline tools and embedders with
 * their own rotation use them; the agent has live ones. Both satisfy the same interfaces, so the
 * transport cannot tell them apart (STYLE.md rule 5).
 *
 * @example
 * ```ts
 * const svids = new StaticSvidSource(svid, clock);
 * svids.onChange(() => console.log('rotated'));
 * svids.set(nextSvid);                       // notifies listeners
 * const revocations = new StaticRevocationSource();
 * revocations.revoke({ spiffeIds: ['spiffe://td/gateway/gw/device/s1'] });
 * ```
 */
import type { Clock } from '../core/clock.ts';
import { SpiffeError } from '../errors.ts';
import { normalizeSerial } from '../spiffe/cert-facts.ts';
import { Listeners } from './listeners.ts';
import type {
  BundleSource,
  RevocationSource,
  SvidSource,
  Unsubscribe,
  X509Bundle,
  X509Svid,
} from './types.ts';

/** One SVID; `getX509Svid` refuses it once the clock passes its NotAfter. */
export class StaticSvidSource implements SvidSource {
  #svid: X509Svid | undefined;
  readonly #clock: Clock;
  readonly #listeners = new Listeners<[]>('svid');

  constructor(svid: X509Svid | undefined, clock: Clock) {
    this.#svid = svid;
    this.#clock = clock;
  }

  getX509Svid(): X509Svid {
    const svid = this.#svid;
    if (svid === undefined) throw new SpiffeError('ERR_SVID_UNAVAILABLE', 'no SVID has been set');
    if (this.#clock.now() >= svid.notAfter) {
      throw new SpiffeError('ERR_SVID_UNAVAILABLE', `SVID ${svid.spiffeId} has expired`, {
        spiffeId: svid.spiffeId,
      });
    }
    return svid;
  }

  /** Replace the SVID and notify listeners. */
  set(svid: X509Svid): void {
    this.#svid = svid;
    this.#listeners.emit();
  }

  onChange(listener: () => void): Unsubscribe {
    return this.#listeners.add(listener);
  }
}

/** Bundles by trust domain. */
export class StaticBundleSource implements BundleSource {
  readonly #bundles = new Map<string, X509Bundle>();
  readonly #listeners = new Listeners<[]>('bundle');

  constructor(bundles: readonly X509Bundle[] = []) {
    for (const b of bundles) this.#bundles.set(b.trustDomain, b);
  }

  getBundleFor(trustDomain: string): X509Bundle {
    const b = this.#bundles.get(trustDomain);
    if (b === undefined) {
      throw new SpiffeError('ERR_BUNDLE_UNAVAILABLE', `no bundle for trust domain ${trustDomain}`);
    }
    return b;
  }

  /** Add or replace the bundle of its trust domain and notify listeners. */
  set(bundle: X509Bundle): void {
    this.#bundles.set(bundle.trustDomain, bundle);
    this.#listeners.emit();
  }

  onChange(listener: () => void): Unsubscribe {
    return this.#listeners.add(listener);
  }
}

/** A revocation set that only grows. */
export class StaticRevocationSource implements RevocationSource {
  readonly #ids = new Set<string>();
  readonly #serials = new Set<string>();
  readonly #listeners = new Listeners<[{ spiffeIds: readonly string[]; serials: readonly string[] }]>(
    'revocations',
  );

  isRevokedId(spiffeId: string): boolean {
    return this.#ids.has(spiffeId);
  }

  isRevokedSerial(serialHex: string): boolean {
    return this.#serials.has(serialHex);
  }

  /** Revoke IDs and/or serials (lowercase hex, no leading zeros) and notify listeners. */
  revoke(what: { spiffeIds?: readonly string[]; serials?: readonly string[] }): void {
    const spiffeIds = what.spiffeIds ?? [];
    const serials = (what.serials ?? []).map(normalizeSerial);
    for (const id of spiffeIds) this.#ids.add(id);
    for (const s of serials) this.#serials.add(s);
    this.#listeners.emit({ spiffeIds, serials });
  }

  onRevoke(
    listener: (revoked: { spiffeIds: readonly string[]; serials: readonly string[] }) => void,
  ): Unsubscribe {
    return this.#listeners.add(listener);
  }
}
