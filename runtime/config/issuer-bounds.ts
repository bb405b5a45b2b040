/**
 * The bounds between the issuer's durations, checked after the schema (which only knows each
 * value's form): every duration is > 0 and has an upper bound; the gateway SVID fits inside the
 * delegated CA (`svidTtl ≤ offlineBudget`); the delegated CA fits inside what is left of the
 * issuer CA (read from `ca.certificate` at load; when that expired, from a valid `ca.next`, the
 * CA a rotation made active: the start checks the store names it); a `pkcs11:` CA key is an RFC 7512 URI with
 * `ca.pkcs11` set. Each problem is a `ConfigIssue` with its path
 * and line, so an impossible combination is a config error (`ERR_CONFIG_INVALID`), never a crash
 * of the daemon later.
 *
 * @example
 * ```ts
 * issuerBounds(cfg, lineOf);                    // [] or [{ path: 'svidTtl', message: 'must be greater than 0 (line 6)' }]
 * await issuerCaBounds(cfg, lineOf, Date.now()); // offlineBudget against the issuer CA's NotAfter
 * ```
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ConfigIssue } from '../errors.ts';
import { isPkcs11Uri, parsePkcs11Uri } from '../issuer/pkcs11/uri.ts';
import { parsePostgresUrl } from '../issuer/store-postgres-connect.ts';
import { parseDuration } from './formats.ts';
import type { IssuerConfig } from './issuer-schema.ts';
import type { LineOf } from './issues.ts';

const SECOND = 1000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** The longest offline budget (delegated CA lifetime) an issuer may give. */
export const MAX_OFFLINE_BUDGET_MS = 30 * DAY;
export const DEFAULT_OFFLINE_BUDGET_MS = 7 * DAY;
export const DEFAULT_SVID_TTL_MS = HOUR;

/** Upper bounds of the other durations (lower bound: > 0 for all). */
const MAX: Record<string, number> = {
  offlineBudget: MAX_OFFLINE_BUDGET_MS,
  svidTtl: MAX_OFFLINE_BUDGET_MS,
  sessionTtl: HOUR,
  bundleRefreshHint: 7 * DAY,
  'rateLimit.window': DAY,
  'jwtSvid.ttl': HOUR,
  'store.postgres.queryTimeout': 10 * 60 * SECOND,
  'listen.handshakeTimeout': 5 * 60 * SECOND,
  'listen.requestTimeout': 10 * 60 * SECOND,
};
/** Lower bounds above 1 ms. */
const MIN: Record<string, number> = {
  bundleRefreshHint: SECOND,
  'jwtSvid.ttl': 30 * SECOND,
  // Below a second, an ordinary batch on a busy database would fail as unavailable.
  'store.postgres.queryTimeout': SECOND,
  // Below a second, a gateway on a slow link would be cut mid-request.
  'listen.handshakeTimeout': SECOND,
  'listen.requestTimeout': SECOND,
};

/** Milliseconds as config-style text for messages: `7d`, `1h`, `19d23h59m`, `250ms`. */
export function formatDuration(ms: number): string {
  let rest = ms;
  let out = '';
  for (const [unit, size] of [
    ['d', DAY],
    ['h', HOUR],
    ['m', 60 * SECOND],
    ['s', SECOND],
    ['ms', 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out === '' ? '0ms' : out;
}

function at(lineOf: LineOf | undefined, path: string, message: string): ConfigIssue {
  const line = lineOf?.(path.split('.'));
  return { path, message: line === undefined ? message : `${message} (line ${line})` };
}

/** The effective offline budget and SVID lifetime of a validated config, in ms. */
export function issuerDurations(cfg: IssuerConfig): { offlineBudgetMs: number; svidTtlMs: number } {
  return {
    offlineBudgetMs:
      cfg.offlineBudget === undefined ? DEFAULT_OFFLINE_BUDGET_MS : parseDuration(cfg.offlineBudget),
    svidTtlMs: cfg.svidTtl === undefined ? DEFAULT_SVID_TTL_MS : parseDuration(cfg.svidTtl),
  };
}

/** `store`: exactly one backend; a PostgreSQL URL that parses and carries no password. */
function storeBounds(cfg: IssuerConfig, lineOf: LineOf | undefined): ConfigIssue[] {
  const { leveldb, postgres } = cfg.store;
  if ((leveldb === undefined) === (postgres === undefined)) {
    return [at(lineOf, 'store', 'must name exactly one of leveldb: { dir } and postgres: { url, ... }')];
  }
  if (postgres === undefined) return [];
  try {
    const target = parsePostgresUrl(postgres.url);
    if (postgres.caFile !== undefined && !target.tls) {
      return [at(lineOf, 'store.postgres.caFile', 'is set but the url does not say sslmode=verify-full')];
    }
  } catch (err) {
    return [at(lineOf, 'store.postgres.url', (err as Error).message.replace(/^store\.postgres\.url /, ''))];
  }
  return [];
}

/**
 * `ca.key`/`ca.next.key` (and the JWT-SVID keys, in the same module) as PKCS#11 URIs: well formed,
 * and `ca.pkcs11` set exactly when one is used.
 */
function pkcs11Bounds(cfg: IssuerConfig, lineOf: LineOf | undefined): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  let used = false;
  for (const [path, key] of [
    ['ca.key', cfg.ca.key],
    ['ca.next.key', cfg.ca.next?.key],
    ['jwtSvid.key', cfg.jwtSvid?.key],
    ['jwtSvid.next', cfg.jwtSvid?.next],
  ] as const) {
    if (key === undefined || !isPkcs11Uri(key)) continue;
    used = true;
    try {
      parsePkcs11Uri(key);
    } catch (err) {
      issues.push(at(lineOf, path, (err as Error).message));
    }
    if (cfg.ca.pkcs11 === undefined)
      issues.push(at(lineOf, path, 'is a PKCS#11 URI: set ca.pkcs11: { module, pinFile }'));
  }
  if (!used && cfg.ca.pkcs11 !== undefined)
    issues.push(
      at(
        lineOf,
        'ca.pkcs11',
        'is set but no key (ca.key, ca.next.key, jwtSvid.key, jwtSvid.next) is a pkcs11: URI',
      ),
    );
  return issues;
}

/** Bounds that need nothing but the document. */
export function issuerBounds(cfg: IssuerConfig, lineOf?: LineOf): ConfigIssue[] {
  const issues: ConfigIssue[] = [...storeBounds(cfg, lineOf), ...pkcs11Bounds(cfg, lineOf)];
  const given: Record<string, string | undefined> = {
    offlineBudget: cfg.offlineBudget,
    svidTtl: cfg.svidTtl,
    sessionTtl: cfg.sessionTtl,
    bundleRefreshHint: cfg.bundleRefreshHint,
    'rateLimit.window': cfg.rateLimit?.window,
    'jwtSvid.ttl': cfg.jwtSvid?.ttl,
    'store.postgres.queryTimeout': cfg.store.postgres?.queryTimeout,
    'listen.handshakeTimeout': cfg.listen.handshakeTimeout,
    'listen.requestTimeout': cfg.listen.requestTimeout,
  };
  const bad = new Set<string>();
  for (const [path, text] of Object.entries(given)) {
    if (text === undefined) continue;
    const ms = parseDuration(text);
    const max = MAX[path] as number;
    const min = MIN[path] ?? 1;
    if (ms < min)
      issues.push(
        at(lineOf, path, min === 1 ? 'must be greater than 0' : `must be at least ${formatDuration(min)}`),
      );
    else if (ms > max) issues.push(at(lineOf, path, `must be at most ${formatDuration(max)}`));
    else continue;
    bad.add(path);
  }
  if (bad.has('svidTtl') || bad.has('offlineBudget')) return issues;
  const d = issuerDurations(cfg);
  if (d.svidTtlMs > d.offlineBudgetMs) {
    // Name the key the file sets; when both are set, the SVID is the one that does not fit.
    const path = cfg.svidTtl === undefined ? 'offlineBudget' : 'svidTtl';
    issues.push(
      at(
        lineOf,
        path,
        `svidTtl (${formatDuration(d.svidTtlMs)}) must not exceed offlineBudget (${formatDuration(d.offlineBudgetMs)}): the gateway SVID must fit inside its delegated CA`,
      ),
    );
  }
  return issues;
}

/**
 * The offline budget against what is left of the issuer CA at `now` (its certificate read from
 * `ca.certificate`): a delegated CA cannot outlive the CA that signs it.
 */
export async function issuerCaBounds(
  cfg: IssuerConfig,
  lineOf: LineOf | undefined,
  now: number,
): Promise<ConfigIssue[]> {
  const notAfterOf = async (path: 'ca.certificate' | 'ca.next.certificate', file: string) => {
    try {
      return Date.parse(new X509Certificate(await readFile(file)).validTo);
    } catch (err) {
      return at(lineOf, path, `cannot be read as a PEM certificate: ${(err as Error).message}`);
    }
  };
  let notAfter = await notAfterOf('ca.certificate', cfg.ca.certificate);
  if (typeof notAfter !== 'number') return [notAfter];
  if (notAfter <= now) {
    // A rotation may have made another CA active in the store: the replica starts on it when it
    // holds its key (ca.next here, or a shared PKCS#11 token's), which only the start can tell.
    const next =
      cfg.ca.next === undefined
        ? undefined
        : await notAfterOf('ca.next.certificate', cfg.ca.next.certificate);
    if (typeof next === 'object') return [next];
    if (next !== undefined && next > now) notAfter = next;
    else if (cfg.ca.pkcs11 !== undefined) return [];
    else
      return [
        at(
          lineOf,
          'ca.certificate',
          `the issuer CA expired at ${new Date(notAfter).toISOString()} (and no valid ca.next)`,
        ),
      ];
  }
  const left = notAfter - now;
  const d = issuerDurations(cfg);
  if (d.offlineBudgetMs <= left) return [];
  return [
    at(
      lineOf,
      'offlineBudget',
      `offlineBudget (${formatDuration(d.offlineBudgetMs)}) exceeds what is left of the issuer CA (${formatDuration(Math.floor(left / 60_000) * 60_000)}, until ${new Date(notAfter).toISOString()})`,
    ),
  ];
}
