/**
 * The issuer's JWT-SVID signing keys (ES256, P-256), rotated like the CA (`ca.ts`): one key
 * signs (`active`); a `next` key is published in the bundle before it signs anything; rotating
 * makes it active and retires the old one, which stays published until every token it signed
 * has expired (the longest JWT-SVID lifetime any holder signs with, plus a minute of clock
 * skew). Each key's `kid` is its RFC 7638 thumbprint, so replicas holding the same key name it
 * alike.
 *
 * The state is the store's (`meta/jwt-keys`, `jwt-key-state.ts`: active, next, retired,
 * sequence, and the lifetimes and lease the housekeeping needs), shared by every replica as the
 * CA state is: each change is written under the record's version (re-applied on conflict) and
 * notifies the `jwt_keys` channel when the published keys change; every replica re-reads the
 * record then, and at its tick (the poll, or sooner when a retired key or the active key's lease
 * lapses: the lapsed key leaves the record then, so the bundle's sequence moves and agents drop
 * it). The store holds public JWKs only: a replica signs with the key (a `CaKey`, from its own
 * configuration: a 0600 PEM file or an HSM) whose `kid` the store names active, within the lease
 * it keeps on it, and refuses to sign (ERR_ISSUER_JWT_KEY) otherwise. A replica whose
 * configured key the store does not know (a first start, or a key replaced in the
 * configuration) makes it the active one and retires the previous active key. An active key no
 * replica holds any more (`jwtSvid` removed everywhere) retires when its lease lapses. The
 * bundle's `spiffe_sequence` is the CA sequence plus this one, so a change of either reaches the
 * agents.
 *
 * @example
 * ```ts
 * const jwt = await JwtKeySet.open({ active: softwareCaKey(key), store, clock, ttlMs: 300_000 });
 * const { key, kid, ttlMs } = jwt.signer();  jwt.authorities();  await jwt.rotate();
 * ```
 */
import type { Clock, Timer } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import { type Logger, nullLogger } from '../core/logger.ts';
import { IssuerError } from '../errors.ts';
import type { CaKey } from '../svid/ca-key.ts';
import { type JwtAuthority, jwkThumbprint, publicJwk } from '../svid/jwt-svid.ts';
import {
  checkedState,
  emptyState,
  type JwtKeysMeta,
  kidsOf,
  nextLapse,
  type Replica,
  rotated,
  settle,
  stateSig,
  withActive,
} from './jwt-key-state.ts';
import type { ReadinessCheck } from './readiness.ts';
import type { IssuerStore, StoreSubscription } from './store.ts';

export { JWT_RETIRE_SKEW_MS } from './jwt-key-state.ts';
/** The store record of the JWT key state (beside `meta/bundle`, the CA state). */
export const JWT_KEYS_KEY = 'meta/jwt-keys';
/** The store channel a JWT key change notifies. */
export const JWT_KEYS_CHANNEL = 'jwt_keys';
const POLL_MS = 30_000;
/** The active key's lease, in polls: holders extend it when half is left. */
const LEASE_POLLS = 10;
const ATTEMPTS = 16;

export interface JwtKeySetOptions {
  /** The configured signing key (absent: this replica signs no JWT-SVID, but publishes the store's keys). */
  readonly active?: CaKey;
  /** A prepared next key: published now, signs after `rotate()`. */
  readonly next?: CaKey;
  readonly store: IssuerStore;
  readonly clock: Clock;
  /** The JWT-SVID lifetime this replica signs with: recorded with the keys it holds. */
  readonly ttlMs: number;
  readonly logger?: Logger;
  readonly pollMs?: number;
}

/** What this replica can do with the keys, for `/readyz` and metrics. */
export interface JwtKeyStatus {
  /** Keys in the bundle now. */
  readonly published: number;
  /** The kid the store names active (absent: none, e.g. every replica's `jwtSvid` removed). */
  readonly active?: string;
  /** This replica holds the active key and its lease: it signs. */
  readonly signing: boolean;
}

/**
 * `/readyz`'s `jwt-signer` check for a replica configured with a JWT key: it must be able to sign
 * with the active one (a rotation it was not given the next key for, a lapsed lease:
 * ERR_ISSUER_JWT_KEY). A replica without `jwtSvid` signs no JWT-SVID by configuration: no check.
 */
export function jwtReadiness(configured: CaKey | undefined, keys: JwtKeySet | undefined): ReadinessCheck[] {
  if (configured === undefined || keys === undefined) return [];
  return [{ name: 'jwt-signer', check: async () => void (await keys.signerNow()) }];
}

function authority(key: CaKey): JwtAuthority {
  try {
    return { kid: jwkThumbprint(key.publicKey), jwk: publicJwk(key.publicKey) };
  } catch (cause) {
    throw new IssuerError('ERR_ISSUER_JWT_KEY', (cause as Error).message, {}, { cause });
  }
}

export class JwtKeySet {
  readonly #o: JwtKeySetOptions;
  readonly #log: Logger;
  readonly #pollMs: number;
  /** The keys this replica holds, by kid. */
  readonly #held = new Map<string, CaKey>();
  #configured: JwtAuthority | undefined;
  #meta: JwtKeysMeta = emptyState();
  #version: number | undefined;
  #subscription: StoreSubscription | undefined;
  #timer: Timer | undefined;
  #closed = false;
  #ticking = false;
  readonly #listeners = new Set<() => void>();

  private constructor(o: JwtKeySetOptions) {
    this.#o = o;
    this.#log = o.logger ?? nullLogger;
    this.#pollMs = o.pollMs ?? POLL_MS;
  }

  static async open(o: JwtKeySetOptions): Promise<JwtKeySet> {
    if (!(o.ttlMs > 0)) throw new TypeError('ttlMs must be positive');
    const set = new JwtKeySet(o);
    const active = o.active === undefined ? undefined : set.#hold(o.active);
    const next = o.next === undefined ? undefined : set.#hold(o.next);
    set.#configured = active;
    await set.#change((m, r) => {
      if (active === undefined) return m;
      if (m.active !== undefined && set.#held.has(m.active.kid)) {
        // The store's state wins; a configured next key it does not have yet is published.
        if (m.next === undefined && next !== undefined && next.kid !== m.active.kid) return { ...m, next };
        return m;
      }
      // First start, or a key the store does not know: the configuration's; the old one retires.
      return withActive(m, active, r, next);
    });
    set.#subscription = await o.store.subscribe(JWT_KEYS_CHANNEL, () => set.#refreshLogged());
    set.#schedule();
    return set;
  }

  /**
   * The key that signs now, its kid, and the longest lifetime its record promises (a token must
   * not outlive it). ERR_ISSUER_JWT_KEY when there is none, this replica lacks it, or its lease
   * lapsed (this replica could not reach the store to keep it).
   */
  signer(): { key: CaKey; kid: string; ttlMs: number } {
    const a = this.#meta.active;
    if (a === undefined)
      throw new IssuerError(
        'ERR_ISSUER_JWT_KEY',
        'no active JWT-SVID signing key: none is configured on any replica (jwtSvid.key)',
      );
    const key = this.#held.get(a.kid);
    if (key === undefined)
      throw new IssuerError(
        'ERR_ISSUER_JWT_KEY',
        `this replica does not hold the active JWT-SVID key (kid ${a.kid}): configure it as jwtSvid.key or jwtSvid.next`,
      );
    if (a.heldUntil === undefined || a.heldUntil <= this.#o.clock.now())
      throw new IssuerError(
        'ERR_ISSUER_JWT_KEY',
        `the lease on the active JWT-SVID key (kid ${a.kid}) lapsed: this replica has not renewed it in the store`,
      );
    return { key, kid: a.kid, ttlMs: Math.min(this.#o.ttlMs, a.ttlMs ?? this.#o.ttlMs) };
  }

  /**
   * `signer()`, but a lease found lapsed on a key this replica holds is first renewed in the store
   * (a tick, now) rather than refused: the lease is extended by the periodic tick, which a
   * suspended process or a clock step may not have run in time; only a replica that cannot reach
   * the store (the tick fails: its typed store error) or has lost the key is refused.
   */
  async signerNow(): Promise<{ key: CaKey; kid: string; ttlMs: number }> {
    const a = this.#meta.active;
    const lapsed = a !== undefined && this.#held.has(a.kid) && (a.heldUntil ?? 0) <= this.#o.clock.now();
    if (lapsed) await this.tick();
    return this.signer();
  }

  /** Every key a verifier must accept now: active, next, and retired ones whose tokens may live. */
  authorities(): JwtAuthority[] {
    const now = this.#o.clock.now();
    const m = this.#meta;
    const bare = ({ kid, jwk }: JwtAuthority): JwtAuthority => ({ kid, jwk });
    return [
      ...(m.active ? [bare(m.active)] : []),
      ...(m.next ? [bare(m.next)] : []),
      ...m.retired.filter((r) => r.until > now).map(bare),
    ];
  }

  status(): JwtKeyStatus {
    let signing = true;
    try {
      this.signer();
    } catch {
      signing = false;
    }
    const active = this.#meta.active?.kid;
    return { published: this.authorities().length, ...(active === undefined ? {} : { active }), signing };
  }

  /** Bumped with every change of the published key set. */
  get sequence(): number {
    return this.#meta.sequence;
  }

  /** Called after this replica applied a new key state. */
  onChange(listener: () => void): void {
    this.#listeners.add(listener);
  }

  /** Make the next key the signer on every replica; the old one stays published until its tokens expired. */
  async rotate(): Promise<{ kid: string; retired: string }> {
    let out = { kid: '', retired: '' };
    await this.#change((m, r) => {
      if (m.next === undefined)
        throw new IssuerError('ERR_ISSUER_JWT_KEY', 'no next JWT-SVID key prepared (set jwtSvid.next)');
      if (!this.#held.has(m.next.kid))
        throw new IssuerError(
          'ERR_ISSUER_JWT_KEY',
          'this replica does not hold the next JWT-SVID key (configure jwtSvid.next here, or rotate on a replica that has it)',
        );
      out = { kid: m.next.kid, retired: m.active?.kid ?? '' };
      return rotated(m, r);
    });
    return out;
  }

  /** Re-read the state from the store (the notification). */
  async refresh(): Promise<void> {
    const e = await this.#o.store.getEntry<unknown>(JWT_KEYS_KEY);
    if (e !== undefined && e.version !== this.#version) this.#apply(checkedState(e.value), e.version);
  }

  /** The periodic work: re-read, extend the lease, retire an orphaned key, drop lapsed ones. */
  tick(): Promise<void> {
    return this.#change((m) => m);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    await this.#subscription?.close();
  }

  #hold(key: CaKey): JwtAuthority {
    const a = authority(key);
    this.#held.set(a.kid, key);
    return a;
  }

  #replica(): Replica {
    return {
      now: this.#o.clock.now(),
      ttlMs: this.#o.ttlMs,
      leaseMs: this.#pollMs * LEASE_POLLS,
      held: (kid) => this.#held.has(kid),
      ...(this.#configured === undefined ? {} : { configured: this.#configured }),
    };
  }

  #apply(meta: JwtKeysMeta, version: number | undefined): void {
    const moved = meta.sequence !== this.#meta.sequence;
    this.#version = version;
    this.#meta = meta;
    for (const l of this.#listeners) l();
    if (moved) this.#schedule();
  }

  /** One change of the shared state plus the housekeeping, written under the record's version; re-applied on conflict. */
  async #change(f: (meta: JwtKeysMeta, r: Replica) => JwtKeysMeta): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const read = await this.#o.store.getEntry<unknown>(JWT_KEYS_KEY);
      const entry = read === undefined ? undefined : { ...read, value: checkedState(read.value) };
      const r = this.#replica();
      const record = settle(f(entry?.value ?? emptyState(), r), r);
      if (entry === undefined && record.active === undefined && record.next === undefined) return;
      if (entry !== undefined && stateSig(entry.value) === stateSig(record)) {
        if (entry.version !== this.#version) this.#apply(entry.value, entry.version);
        return;
      }
      const keysMoved = kidsOf(entry?.value) !== kidsOf(record);
      record.sequence = (entry?.value.sequence ?? 0) + (keysMoved ? 1 : 0);
      try {
        const { version } = await this.#o.store.batch([
          entry === undefined
            ? { type: 'absent', key: JWT_KEYS_KEY }
            : { type: 'version', key: JWT_KEYS_KEY, version: entry.version },
          { type: 'put', key: JWT_KEYS_KEY, value: record },
          // Only a change of the published keys is news to the other replicas (a lease or a
          // lifetime they read at their tick).
          ...(keysMoved ? [{ type: 'notify' as const, channel: JWT_KEYS_CHANNEL }] : []),
        ]);
        this.#apply(record, version);
        return;
      } catch (err) {
        if (!isEdgewardError(err) || err.code !== 'ERR_ISSUER_STORE_CONFLICT' || attempt >= ATTEMPTS)
          throw err;
      }
    }
  }

  #refreshLogged(): void {
    this.refresh().catch((e: unknown) =>
      this.#log.warn('JWT key state refresh failed', { error: String(e) }),
    );
  }

  /**
   * The next tick: the poll, or sooner when a retired key or the lease lapses. The timer is set
   * again as a tick starts (a slow store does not stretch the period); a tick still running
   * when the next one is due lets that one pass.
   */
  #schedule(): void {
    if (this.#closed) return;
    this.#timer?.cancel();
    const now = this.#o.clock.now();
    const lapse = nextLapse(this.#meta);
    const delay = lapse === undefined || lapse <= now ? this.#pollMs : Math.min(this.#pollMs, lapse - now);
    this.#timer = this.#o.clock.setTimer('issuer-jwt-keys-poll', delay, () => {
      this.#schedule();
      if (this.#ticking) return;
      this.#ticking = true;
      this.tick()
        .catch((e: unknown) => this.#log.warn('JWT key state tick failed', { error: String(e) }))
        .finally(() => {
          this.#ticking = false;
        });
    });
  }
}
