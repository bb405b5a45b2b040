/**
 * Following the issuer's CA switch (README "Rotating the issuer CA"): the bundle lists the signing
 * root first, so when the bundle the agent holds (from the feed or an issuance) names a signing
 * root that did not sign the delegated CA, the CA is renewed under it at a time drawn uniformly
 * from the next `windowMs` (default 1 h), not at its own half-life: devices, workloads and the
 * gateway's local server certificate then get chains under the new root within the window, and
 * a fleet spreads its renewals instead of asking the issuer all at once. The old root stays in
 * the bundle until what it signed has expired (the issuer's rule), so nothing breaks meanwhile.
 *
 * One draw per (delegated CA, signing root): a bundle seen again does not move the time.
 *
 * @example
 * ```ts
 * const follow = new RootSwitch(windowMs, random);
 * const due = follow.dueAt(live.ca, bundle, now);   // undefined: under the signing root (or unknown)
 * ```
 */
import type { X509Certificate } from 'node:crypto';
import type { Random } from '../core/random.ts';
import type { X509Bundle } from '../sources/types.ts';
import type { DelegatedCa } from './identity.ts';

export const DEFAULT_ROOT_SWITCH_WINDOW_MS = 60 * 60_000;

/**
 * Whether the top of the delegated CA's chain was signed by the bundle's signing root
 * (`roots[0]`, name and signature); undefined when the bundle has no root.
 */
export function underSigningRoot(ca: DelegatedCa, bundle: X509Bundle): boolean | undefined {
  const root = bundle.roots[0];
  const top = ca.chain.at(-1);
  if (root === undefined || top === undefined) return undefined;
  if (top.raw.equals(root.raw)) return true;
  return issuedBy(top, root);
}

function issuedBy(cert: X509Certificate, ca: X509Certificate): boolean {
  try {
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  } catch {
    return false;
  }
}

export class RootSwitch {
  readonly #windowMs: number;
  readonly #random: Random;
  /** The (CA, root) pair the last draw was for, and its time. */
  #drawn: { key: string; at: number } | undefined;

  constructor(windowMs: number | undefined, random: Random) {
    const w = windowMs ?? DEFAULT_ROOT_SWITCH_WINDOW_MS;
    if (!(w >= 0) || !Number.isFinite(w)) throw new TypeError('rootSwitchWindowMs must be a finite ms >= 0');
    this.#windowMs = w;
    this.#random = random;
  }

  /**
   * When the delegated CA `ca` must be renewed because `bundle`'s signing root did not sign it
   * (a time in [now, now + window), drawn once per CA and root; `fresh` on the draw); undefined
   * when it is under that root or the bundle says nothing.
   */
  dueAt(
    ca: DelegatedCa,
    bundle: X509Bundle | undefined,
    now: number,
  ): { at: number; fresh: boolean } | undefined {
    if (bundle === undefined || underSigningRoot(ca, bundle) !== false) return undefined;
    const key = `${ca.chain[0]?.serialNumber}/${bundle.roots[0]?.fingerprint256}`;
    if (this.#drawn?.key === key) return { at: this.#drawn.at, fresh: false };
    this.#drawn = { key, at: now + Math.floor(this.#random.float() * this.#windowMs) };
    return { at: this.#drawn.at, fresh: true };
  }
}
