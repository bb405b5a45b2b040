/**
 * The issuer's JWT-SVID signing keys (ES256, P-256), rotated like the CA (`ca.ts`): one key
 * signs (`active`); a `next` key is published in the bundle before it signs anything; rotating
 * makes it active and retires the old one, which stays published until every token it signed
 * has expired (the JWT-SVID lifetime, minutes, plus a minute of clock skew). Each key's `kid` is
 * its RFC 7638 thumbprint, so replicas holding the same key name it alike.
 *
 * The state is the store's (`meta/jwt-keys`: active, next, retired, sequence), shared by every
 * replica as the CA state is: each change is written under the record's version (re-applied on
 * conflict) and notifies the `jwt_keys` channel; every replica re-reads the record then, and on
 * a poll. The store holds public JWKs only: a replica signs with the key (a `CaKey`, from its
 * own configuration: a 0600 PEM file or an HSM) whose `kid` the store names active, and
 * refuses to sign (ERR_ISSUER_JWT_KEY) when it does not hold it. A replica whose configured key
 * the store does not know (a first start, or a key replaced in the configuration) makes it the
 * active one and retires the previous active key. The bundle's `spiffe_sequence` is the CA
 * sequence plus this one, so a change of either reaches the agents.
 *
 * @example
 * ```ts
 * const jwt = await JwtKeySet.open({ active: softwareCaKey(key), store, clock, ttlMs: 300_000 });
 * const { key, kid } = jwt.signer();  jwt.authorities();  await jwt.rotate();
 * ```
 */
import type { Clock, Timer } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import { type Logger, nullLogger } from '../core/logger.ts';
import { IssuerError } from '../errors.ts';
import type { CaKey } from '../svid/ca-key.ts';
import { type JwtAuthority, jwkThumbprint, publicJwk } from '../svid/jwt-svid.ts';
import type { IssuerStore, StoreSubscription } from './store.ts';

/** The store record of the JWT key state (beside `meta/bundle`, the CA state). */
export const JWT_KEYS_KEY = 'meta/jwt-keys';
/** The store channel a JWT key change notifies. */
export const JWT_KEYS_CHANNEL = 'jwt_keys';
/** How long a retired key stays published beyond the token lifetime (clock skew of verifiers). */
export const JWT_RETIRE_SKEW_MS = 60_000;
const POLL_MS = 30_000;
const ATTEMPTS = 16;

interface Retired extends JwtAuthority {
  readonly until: number;
}

interface JwtKeysMeta {
  sequence: number;
  active?: JwtAuthority;
  next?: JwtAuthority;
  retired: Retired[];
}

export interface JwtKeySetOptions {
  /** The configured signing key (absent: this replica signs no JWT-SVID, but publishes the store's keys). */
  readonly active?: CaKey;
  /** A prepared next key: published now, signs after `rotate()`. */
  readonly next?: CaKey;
  readonly store: IssuerStore;
  readonly clock: Clock;
  /** The JWT-SVID lifetime: how long a retired key must stay published. */
  readonly ttlMs: number;
  readonly logger?: Logger;
  readonly pollMs?: number;
}

function authority(key: CaKey): JwtAuthority {
  try {
    return { kid: jwkThumbprint(key.publicKey), jwk: publicJwk(key.publicKey) };
  } catch (cause) {
    throw new IssuerError('ERR_ISSUER_JWT_KEY', (cause as Error).message, {}, { cause });
  }
}

const kids = (m: JwtKeysMeta | undefined): string =>
  m === undefined ? '' : [m.active?.kid, m.next?.kid, ...m.retired.map((r) => r.kid)].join();

export class JwtKeySet {
  readonly #o: JwtKeySetOptions;
  readonly #log: Logger;
  /** The keys this replica holds, by kid. */
  readonly #held = new Map<string, CaKey>();
  #meta: JwtKeysMeta = { sequence: 0, retired: [] };
  #version: number | undefined;
  #subscription: StoreSubscription | undefined;
  #timer: Timer | undefined;
  #closed = false;
  readonly #listeners = new Set<() => void>();

  private constructor(o: JwtKeySetOptions) {
    this.#o = o;
    this.#log = o.logger ?? nullLogger;
  }

  static async open(o: JwtKeySetOptions): Promise<JwtKeySet> {
    if (!(o.ttlMs > 0)) throw new TypeError('ttlMs must be positive');
    const set = new JwtKeySet(o);
    const active = o.active === undefined ? undefined : set.#hold(o.active);
    const next = o.next === undefined ? undefined : set.#hold(o.next);
    if (active === undefined) await set.refresh();
    else
      await set.#change((meta) => {
        const m = meta ?? { sequence: 0, retired: [] };
        if (m.active !== undefined && set.#held.has(m.active.kid)) {
          // The store's state wins; a configured next key it does not have yet is published.
          if (m.next === undefined && next !== undefined && next.kid !== m.active.kid) return { ...m, next };
          return m;
        }
        // First start, or a key the store does not know: the configuration's; the old one retires.
        const old = m.active === undefined ? [] : [set.#retire(m.active)];
        const { next: _unused, ...rest } = m;
        return {
          ...rest,
          active,
          retired: [...m.retired.filter((r) => r.kid !== active.kid), ...old],
          ...(next === undefined || next.kid === active.kid ? {} : { next }),
        };
      });
    set.#subscription = await o.store.subscribe(JWT_KEYS_CHANNEL, () => set.#refreshLogged());
    set.#schedulePoll();
    return set;
  }

  /** The key that signs now and its kid (ERR_ISSUER_JWT_KEY when there is none or this replica lacks it). */
  signer(): { key: CaKey; kid: string } {
    const a = this.#meta.active;
    if (a === undefined)
      throw new IssuerError('ERR_ISSUER_JWT_KEY', 'no JWT-SVID signing key is configured (jwtSvid.key)');
    const key = this.#held.get(a.kid);
    if (key === undefined)
      throw new IssuerError(
        'ERR_ISSUER_JWT_KEY',
        `this replica does not hold the active JWT-SVID key (kid ${a.kid}): configure it as jwtSvid.key or jwtSvid.next`,
      );
    return { key, kid: a.kid };
  }

  /** Every key a verifier must accept now: active, next, and retired ones whose tokens may live. */
  authorities(): JwtAuthority[] {
    const now = this.#o.clock.now();
    const m = this.#meta;
    return [
      ...(m.active ? [m.active] : []),
      ...(m.next ? [m.next] : []),
      ...m.retired.filter((r) => r.until > now).map(({ kid, jwk }) => ({ kid, jwk })),
    ];
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
    await this.#change((meta) => {
      const m = meta ?? { sequence: 0, retired: [] };
      if (m.next === undefined)
        throw new IssuerError('ERR_ISSUER_JWT_KEY', 'no next JWT-SVID key prepared (set jwtSvid.next)');
      if (!this.#held.has(m.next.kid))
        throw new IssuerError(
          'ERR_ISSUER_JWT_KEY',
          'this replica does not hold the next JWT-SVID key (configure jwtSvid.next here, or rotate on a replica that has it)',
        );
      out = { kid: m.next.kid, retired: m.active?.kid ?? '' };
      const { next, ...rest } = m;
      return {
        ...rest,
        active: next,
        retired: [...m.retired, ...(m.active === undefined ? [] : [this.#retire(m.active)])],
      };
    });
    return out;
  }

  /** Re-read the state from the store (the notification, the poll). */
  async refresh(): Promise<void> {
    const e = await this.#o.store.getEntry<JwtKeysMeta>(JWT_KEYS_KEY);
    if (e !== undefined && e.version !== this.#version) this.#apply(e.value, e.version);
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

  #retire(a: JwtAuthority): Retired {
    return { kid: a.kid, jwk: a.jwk, until: this.#o.clock.now() + this.#o.ttlMs + JWT_RETIRE_SKEW_MS };
  }

  #apply(meta: JwtKeysMeta, version: number | undefined): void {
    this.#version = version;
    this.#meta = meta;
    for (const l of this.#listeners) l();
  }

  /** One change of the shared state, written under the record's version; re-applied on conflict. */
  async #change(f: (meta: JwtKeysMeta | undefined) => JwtKeysMeta): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const entry = await this.#o.store.getEntry<JwtKeysMeta>(JWT_KEYS_KEY);
      const now = this.#o.clock.now();
      const changed = f(entry?.value);
      // Drop lapsed retired keys and the undefined `next` a rotation leaves behind.
      const { next, ...rest } = changed;
      const record: JwtKeysMeta = {
        ...rest,
        ...(next === undefined ? {} : { next }),
        retired: changed.retired.filter((r) => r.until > now),
      };
      const same = entry !== undefined && kids(entry.value) === kids(record);
      record.sequence = same ? entry.value.sequence : (entry?.value.sequence ?? 0) + 1;
      if (entry !== undefined && same) {
        this.#apply(entry.value, entry.version);
        return;
      }
      try {
        const { version } = await this.#o.store.batch([
          entry === undefined
            ? { type: 'absent', key: JWT_KEYS_KEY }
            : { type: 'version', key: JWT_KEYS_KEY, version: entry.version },
          { type: 'put', key: JWT_KEYS_KEY, value: record },
          { type: 'notify', channel: JWT_KEYS_CHANNEL },
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

  #schedulePoll(): void {
    if (this.#closed) return;
    this.#timer = this.#o.clock.setTimer('issuer-jwt-keys-poll', this.#o.pollMs ?? POLL_MS, () => {
      this.refresh()
        .catch((e: unknown) => this.#log.warn('JWT key state poll failed', { error: String(e) }))
        .finally(() => this.#schedulePoll());
    });
  }
}
