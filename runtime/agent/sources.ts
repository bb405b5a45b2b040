/**
 * The agent's `SvidSource` and `BundleSource` (STYLE.md rule 5): what the transport sees of the
 * live identity. Each judges validity at call time against the injected clock (with the time
 * floor applied), so an SVID is never handed out at or after its NotAfter, even between timers.
 * `notify()` is called by the agent after every change (rotation, expiry, new bundle).
 */
import type { Logger } from '../core/logger.ts';
import { RuntimeError } from '../errors.ts';
import { Listeners } from '../sources/listeners.ts';
import type { BundleSource, SvidSource, Unsubscribe, X509Bundle, X509Svid } from '../sources/types.ts';
import { type BundleRecord, NAMES } from '../store/records.ts';
import type { StoreOp } from '../store/sealed-store.ts';
import type { DecodedBundle } from '../svid/bundle.ts';
import type { JwtAuthority } from '../svid/jwt-svid.ts';
import type { LiveIdentity } from './identity.ts';

/** A source's `onChange`, with the `notify` and `clearListeners` the agent calls. */
class ChangeNotifier {
  readonly #listeners: Listeners<[]>;

  constructor(what: string, logger: Logger) {
    this.#listeners = new Listeners(what, logger);
  }

  onChange(listener: () => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  notify(): void {
    this.#listeners.emit();
  }

  clearListeners(): void {
    this.#listeners.clear();
  }
}

export class AgentSvidSource extends ChangeNotifier implements SvidSource {
  #live: LiveIdentity | undefined;
  readonly #now: () => number;

  constructor(now: () => number, logger: Logger) {
    super('svid', logger);
    this.#now = now;
  }

  set(live: LiveIdentity | undefined): void {
    this.#live = live;
  }

  /** The identity when its SVID is valid now. */
  current(): LiveIdentity | undefined {
    const live = this.#live;
    return live !== undefined && this.#now() < live.svid.notAfter ? live : undefined;
  }

  /** The loaded identity whatever its validity (the delegated CA may outlive the SVID). */
  loaded(): LiveIdentity | undefined {
    return this.#live;
  }

  getX509Svid(): X509Svid {
    const live = this.current();
    if (live === undefined)
      throw new RuntimeError(
        'ERR_SVID_UNAVAILABLE',
        this.#live === undefined ? 'no gateway SVID yet' : 'the gateway SVID has expired',
      );
    return live.svid;
  }
}

export class AgentBundleSource extends ChangeNotifier implements BundleSource {
  #bundle: X509Bundle | undefined;
  #jwtKeys: readonly JwtAuthority[] = [];

  constructor(logger: Logger) {
    super('bundle', logger);
  }

  /**
   * The one way a bundle is adopted (from the store at start, an issuance, the feed): serve it,
   * and tell listeners when its sequence changed. Returns whether it changed. Callers persist it
   * first (`bundleRecordOp`) when it came from upstream.
   */
  adopt(trustDomain: string, decoded: DecodedBundle): boolean {
    const changed = this.#bundle === undefined || decoded.sequence !== this.#bundle.sequence;
    this.#bundle = { trustDomain, roots: decoded.roots, sequence: decoded.sequence };
    this.#jwtKeys = decoded.jwtKeys;
    if (changed) this.notify();
    return changed;
  }

  get sequence(): number | undefined {
    return this.#bundle?.sequence;
  }

  /** The JWT-SVID signing keys (`use: "jwt-svid"`) of the bundle held for `trustDomain`. */
  jwtKeysFor(trustDomain: string): readonly JwtAuthority[] {
    this.getBundleFor(trustDomain);
    return this.#jwtKeys;
  }

  getBundleFor(trustDomain: string): X509Bundle {
    const b = this.#bundle;
    if (b === undefined || b.trustDomain !== trustDomain)
      throw new RuntimeError('ERR_BUNDLE_UNAVAILABLE', `no bundle for trust domain ${trustDomain}`);
    return b;
  }
}

/** The store write that persists a bundle received from upstream. */
export function bundleRecordOp(trustDomain: string, b: DecodedBundle & { json: string }): StoreOp {
  const value: BundleRecord = { trustDomain, json: b.json, sequence: b.sequence };
  return { type: 'put', name: NAMES.bundle, value };
}
