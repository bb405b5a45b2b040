/**
 * The agent's JWT-SVID cache for the Workload API: one token per (SPIFFE ID, audience set),
 * obtained from the issuer (`WorkloadHost.fetchJwtSvid`), reused until half of its lifetime has
 * passed; then a fresh one is asked for. When the upstream is away (the request fails), a cached
 * token is served while it is still before its `exp` — never at or after it; with none, the
 * failure is the answer. Concurrent requests for the same key share one upstream call. The cache
 * holds at most `maxEntries` tokens (expired ones are dropped first, then the oldest).
 *
 * @example
 * ```ts
 * const cache = new JwtSvidCache(host);
 * const { token, expiresAt } = await cache.get('spiffe://td/gateway/gw/workload/w', ['api']);
 * ```
 */
import { decodeJwt } from 'jose';
import { RuntimeError } from '../errors.ts';

export interface JwtSvidSource {
  now(): number;
  fetchJwtSvid(spiffeId: string, audience: readonly string[]): Promise<{ token: string; expiresAt: number }>;
}

export interface CachedJwtSvid {
  readonly spiffeId: string;
  readonly token: string;
  /** `exp` in ms: never served at or after it. */
  readonly expiresAt: number;
  /** Half-life: a fresh token is asked for from then on. */
  readonly refreshAt: number;
}

export const DEFAULT_JWT_CACHE_ENTRIES = 1000;

export class JwtSvidCache {
  readonly #src: JwtSvidSource;
  readonly #max: number;
  readonly #cache = new Map<string, CachedJwtSvid>();
  readonly #pending = new Map<string, Promise<CachedJwtSvid>>();

  constructor(src: JwtSvidSource, maxEntries = DEFAULT_JWT_CACHE_ENTRIES) {
    this.#src = src;
    this.#max = maxEntries;
  }

  get size(): number {
    return this.#cache.size;
  }

  /** A JWT-SVID for `spiffeId` and `audience` (order and duplicates do not matter). */
  async get(spiffeId: string, audience: readonly string[]): Promise<CachedJwtSvid> {
    const aud = [...new Set(audience)].sort();
    const key = JSON.stringify([spiffeId, aud]);
    const hit = this.#cache.get(key);
    const now = this.#src.now();
    if (hit !== undefined && now < hit.refreshAt && now < hit.expiresAt) return hit;
    let p = this.#pending.get(key);
    if (p === undefined) {
      p = this.#fetch(key, spiffeId, aud).finally(() => this.#pending.delete(key));
      this.#pending.set(key, p);
    }
    try {
      return await p;
    } catch (err) {
      // The upstream is away or refused: the cached token while it lives, never past exp.
      const cached = this.#cache.get(key);
      if (cached !== undefined && this.#src.now() < cached.expiresAt) return cached;
      throw err;
    }
  }

  /** Forget tokens of SPIFFE IDs no longer registered. */
  retain(ids: ReadonlySet<string>): void {
    for (const [k, v] of this.#cache) if (!ids.has(v.spiffeId)) this.#cache.delete(k);
  }

  async #fetch(key: string, spiffeId: string, aud: readonly string[]): Promise<CachedJwtSvid> {
    const asked = this.#src.now();
    const got = await this.#src.fetchJwtSvid(spiffeId, aud);
    let claims: ReturnType<typeof decodeJwt>;
    try {
      claims = decodeJwt(got.token);
    } catch (cause) {
      throw new RuntimeError('ERR_JWT_SVID_INVALID', 'the issuer answered a token that does not parse', {
        cause,
      });
    }
    const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : Number.NaN;
    if (claims.sub !== spiffeId || !(exp > this.#src.now()))
      throw new RuntimeError('ERR_JWT_SVID_INVALID', 'the issuer answered a token for another ID or expired');
    const iat = typeof claims.iat === 'number' ? Math.min(claims.iat * 1000, asked) : asked;
    const entry: CachedJwtSvid = {
      spiffeId,
      token: got.token,
      expiresAt: exp,
      refreshAt: iat + Math.floor((exp - iat) / 2),
    };
    this.#cache.delete(key);
    this.#cache.set(key, entry);
    this.#bound();
    return entry;
  }

  #bound(): void {
    if (this.#cache.size <= this.#max) return;
    const now = this.#src.now();
    for (const [k, v] of this.#cache) if (v.expiresAt <= now) this.#cache.delete(k);
    // Map order is insertion order: the oldest go first.
    for (const k of this.#cache.keys()) {
      if (this.#cache.size <= this.#max) break;
      this.#cache.delete(k);
    }
  }
}
