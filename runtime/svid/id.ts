/**
 * SPIFFE ID checks the signer needs (SPIFFE-ID spec §2): `spiffe://<trust domain>/<path>`,
 * lowercase trust domain of `[a-z0-9.-_]`, path segments of `[A-Za-z0-9.-_]`, no empty, `.` or
 * `..` segment, no query, fragment, port or user info. Kept private to `runtime/svid` and the
 * issuer; the transport's verifier has its own in `runtime/spiffe/`.
 *
 * @example
 * ```ts
 * const id = parseSpiffeId('spiffe://fleet.example/gateway/gw-1');
 * id.trustDomain; // 'fleet.example'   id.segments; // ['gateway', 'gw-1']
 * ```
 */
import { SvidError } from '../errors.ts';

export interface SpiffeId {
  readonly text: string;
  readonly trustDomain: string;
  readonly segments: readonly string[];
}

const TD_RE = /^[a-z0-9._-]{1,255}$/;
const SEG_RE = /^[A-Za-z0-9._-]+$/;

export function parseSpiffeId(text: string): SpiffeId {
  const bad = (why: string): SvidError =>
    new SvidError('ERR_SVID_ID_INVALID', `'${text.slice(0, 80)}': ${why}`);
  if (typeof text !== 'string' || text.length > 2048) throw bad('not a SPIFFE ID');
  if (!text.startsWith('spiffe://')) throw bad('scheme must be spiffe://');
  const rest = text.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash < 0 ? rest : rest.slice(0, slash);
  if (!TD_RE.test(td)) throw bad('trust domain must be lowercase letters, digits, ".", "-", "_"');
  if (slash < 0) return { text, trustDomain: td, segments: [] };
  const segments = rest.slice(slash + 1).split('/');
  for (const s of segments) {
    if (s === '') throw bad('empty path segment or trailing slash');
    if (s === '.' || s === '..') throw bad('dot segments are not allowed');
    if (!SEG_RE.test(s)) throw bad('path segments are letters, digits, ".", "-", "_"');
  }
  return { text, trustDomain: td, segments };
}

/** True when `s` is one valid SPIFFE path segment (a gateway name or device id). */
export function isPathSegment(s: string): boolean {
  return typeof s === 'string' && s.length <= 255 && SEG_RE.test(s) && s !== '.' && s !== '..';
}

/** `spiffe://<td>/gateway/<name>`. */
export function gatewayId(trustDomain: string, name: string): string {
  if (!TD_RE.test(trustDomain)) throw new SvidError('ERR_SVID_ID_INVALID', `bad trust domain ${trustDomain}`);
  if (!isPathSegment(name)) throw new SvidError('ERR_SVID_ID_INVALID', `bad gateway name '${name}'`);
  return `spiffe://${trustDomain}/gateway/${name}`;
}
