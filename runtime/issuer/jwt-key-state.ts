/**
 * The shared JWT-SVID key state (`meta/jwt-keys`) and the pure changes replicas make to it
 * (`jwt-keys.ts` writes them under the record's version). Besides the keys (active, next,
 * retired), the record keeps what the housekeeping needs:
 *
 * - `ttlMs` on the active and next key: the longest token lifetime any replica holding it may
 *   sign with. Every holder raises it to its own `jwtSvid.ttl` before it signs, so a key retired
 *   by a replica with a short ttl stays published as long as a token from a replica with a long
 *   one may live (`until` = retirement + that lifetime + a minute of clock skew).
 * - `heldUntil` on the active key: a lease its holders extend (when half of it is left) while
 *   they can sign with it. A replica signs only within the lease it knows. When it lapses — no
 *   replica holds the key any more (`jwtSvid` removed everywhere) — any replica retires the key:
 *   it stays published until the last token it may have signed expired, then leaves the bundle.
 * - retired keys are dropped from the record (the bundle's sequence moves) once they lapse.
 *
 * @example
 * ```ts
 * const m2 = settle(m, { now, ttlMs, held: (kid) => keys.has(kid) });
 * if (stateSig(m2) !== stateSig(m)) write(m2);
 * ```
 */
import { IssuerError } from '../errors.ts';
import type { JwtAuthority } from '../svid/jwt-svid.ts';

/** How long a retired key stays published beyond the token lifetime (clock skew of verifiers). */
export const JWT_RETIRE_SKEW_MS = 60_000;

export interface KeyRecord extends JwtAuthority {
  /** The longest token lifetime (ms) a holder may sign with (raised by each holder before it signs). */
  readonly ttlMs?: number;
  /** Active key only: the lease its holders extend; a replica signs only before it. */
  readonly heldUntil?: number;
}

export interface Retired extends JwtAuthority {
  readonly until: number;
}

export interface JwtKeysMeta {
  sequence: number;
  active?: KeyRecord;
  next?: KeyRecord;
  retired: Retired[];
}

/** What one replica brings to a change: the time, its token lifetime, the keys it holds. */
export interface Replica {
  readonly now: number;
  readonly ttlMs: number;
  readonly leaseMs: number;
  held(kid: string): boolean;
  /** The configured key, made active again when the store has none (a lease lost to a partition). */
  readonly configured?: JwtAuthority;
}

export const emptyState = (): JwtKeysMeta => ({ sequence: 0, retired: [] });

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isKey = (v: unknown): v is Record<string, unknown> =>
  isObject(v) &&
  typeof v.kid === 'string' &&
  v.kid !== '' &&
  isObject(v.jwk) &&
  v.jwk.kty === 'EC' &&
  v.jwk.crv === 'P-256' &&
  typeof v.jwk.x === 'string' &&
  typeof v.jwk.y === 'string';
const isKeyRecord = (v: unknown): boolean =>
  isKey(v) &&
  (v.ttlMs === undefined || isTime(v.ttlMs)) &&
  (v.heldUntil === undefined || isTime(v.heldUntil));

/**
 * `meta/jwt-keys` as read from the store, checked as live input is: a record that is not the
 * state's shape (a damaged or hand-edited row) is ERR_ISSUER_JWT_KEY, never a crash in the
 * housekeeping or a key published or signed with on a wrong answer.
 */
export function checkedState(v: unknown): JwtKeysMeta {
  const ok =
    isObject(v) &&
    Number.isSafeInteger(v.sequence) &&
    (v.sequence as number) >= 0 &&
    (v.active === undefined || isKeyRecord(v.active)) &&
    (v.next === undefined || isKeyRecord(v.next)) &&
    Array.isArray(v.retired) &&
    v.retired.every((x: unknown) => isKey(x) && isTime(x.until));
  if (!ok)
    throw new IssuerError(
      'ERR_ISSUER_JWT_KEY',
      "the store's JWT key state (meta/jwt-keys) is malformed: no JWT-SVID key is published or signed with from it",
    );
  return v as unknown as JwtKeysMeta;
}

const bare = (k: JwtAuthority): JwtAuthority => ({ kid: k.kid, jwk: k.jwk });

/** Retire `a` now: published until a token of the longest lifetime signed now has expired. */
export function retire(a: KeyRecord, r: Replica, signedUntil = r.now): Retired {
  return { ...bare(a), until: signedUntil + Math.max(a.ttlMs ?? 0, r.ttlMs) + JWT_RETIRE_SKEW_MS };
}

/** A state with `active` (this replica's configured key) as the signer; the previous one retires. */
export function withActive(
  m: JwtKeysMeta,
  active: JwtAuthority,
  r: Replica,
  next?: JwtAuthority,
): JwtKeysMeta {
  const old = m.active === undefined ? [] : [retire(m.active, r)];
  const { next: _unused, active: _a, ...rest } = m;
  return {
    ...rest,
    active: bare(active),
    retired: [...m.retired.filter((x) => x.kid !== active.kid), ...old],
    ...(next === undefined || next.kid === active.kid ? {} : { next: bare(next) }),
  };
}

/** The next key becomes the signer; the active one retires. */
export function rotated(m: JwtKeysMeta, r: Replica): JwtKeysMeta {
  const { next, active, ...rest } = m;
  return {
    ...rest,
    ...(next === undefined ? {} : { active: { ...next, heldUntil: r.now + r.leaseMs } }),
    retired: [
      ...m.retired.filter((x) => x.kid !== next?.kid),
      ...(active === undefined ? [] : [retire(active, r)]),
    ],
  };
}

/**
 * The housekeeping every change and every tick applies: held keys carry this replica's ttl, the
 * lease is extended by a holder (or started, for a record that has none), an active key whose
 * lease lapsed retires, the configured key takes an empty active place, lapsed retired keys go.
 */
export function settle(m: JwtKeysMeta, r: Replica): JwtKeysMeta {
  let active = m.active;
  let retired = m.retired;
  if (active === undefined && r.configured !== undefined && r.held(r.configured.kid))
    // A holder cut off from the store long enough to lose the lease: its key again (the
    // published next one stays).
    return settle(withActive(m, r.configured, r, m.next), r);
  if (active !== undefined) {
    const mine = r.held(active.kid);
    if (!mine && active.heldUntil !== undefined && active.heldUntil <= r.now) {
      // Nobody extended the lease: no replica can sign with it. Its tokens may live until the
      // lease's end plus their lifetime.
      retired = [...retired, retire(active, r, active.heldUntil)];
      active = undefined;
    } else {
      const ttlMs = mine ? Math.max(active.ttlMs ?? 0, r.ttlMs) : active.ttlMs;
      const heldUntil =
        active.heldUntil === undefined || (mine && active.heldUntil - r.now < r.leaseMs / 2)
          ? r.now + r.leaseMs
          : active.heldUntil;
      active = { ...bare(active), ...(ttlMs === undefined ? {} : { ttlMs }), heldUntil };
    }
  }
  let next = m.next;
  if (next !== undefined && r.held(next.kid) && (next.ttlMs ?? 0) < r.ttlMs)
    next = { ...next, ttlMs: r.ttlMs };
  return {
    sequence: m.sequence,
    ...(active === undefined ? {} : { active }),
    ...(next === undefined ? {} : { next }),
    retired: retired.filter((x) => x.until > r.now),
  };
}

/** The kids published, in order: a change of them moves the bundle's sequence. */
export const kidsOf = (m: JwtKeysMeta | undefined): string =>
  m === undefined ? '' : [m.active?.kid, m.next?.kid, ...m.retired.map((x) => x.kid)].join();

/** Everything but the sequence, independent of key order (PostgreSQL's jsonb reorders members). */
export const stateSig = (m: JwtKeysMeta | undefined): string =>
  m === undefined
    ? ''
    : JSON.stringify([
        m.active?.kid,
        m.active?.ttlMs,
        m.active?.heldUntil,
        m.next?.kid,
        m.next?.ttlMs,
        m.retired.map((x) => [x.kid, x.until]),
      ]);

/** The earliest time the state changes by itself (a retired key or a lease lapsing). */
export function nextLapse(m: JwtKeysMeta): number | undefined {
  const times = [
    ...m.retired.map((x) => x.until),
    ...(m.active?.heldUntil === undefined ? [] : [m.active.heldUntil]),
  ];
  return times.length === 0 ? undefined : Math.min(...times);
}
