/**
 * SPIFFE IDs (SPIFFE-ID standard §2): `spiffe://<trust domain>/<path>`. Parsing is strict —
 * lowercase trust domain of `[a-z0-9.-_]`, path segments of `[A-Za-z0-9.-_]`, no empty, `.`
 * or `..` segments, no query, fragment, port or userinfo — so two spellings of one identity
 * can never both pass.
 *
 * @example
 * ```ts
 * const id = parseSpiffeId('spiffe://fleet.example/gateway/gw-1/device/sensor-1');
 * id.trustDomain;              // 'fleet.example'
 * deviceIdOf(id.id, 'spiffe://fleet.example/gateway/gw-1'); // 'sensor-1'
 * ```
 */
import { SpiffeError } from '../errors.ts';

export interface SpiffeId {
  /** The whole ID, as parsed (it is already canonical). */
  readonly id: string;
  readonly trustDomain: string;
  /** The path, starting with `/`, or `''` for the trust domain itself. */
  readonly path: string;
  readonly segments: readonly string[];
}

const TD_RE = /^[a-z0-9._-]{1,255}$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;
const MAX_ID_LENGTH = 2048;

/** Parse and validate a SPIFFE ID; throws `ERR_SPIFFE_ID_INVALID` with the reason. */
export function parseSpiffeId(text: string): SpiffeId {
  const fail = (why: string): never => {
    throw new SpiffeError('ERR_SPIFFE_ID_INVALID', `invalid SPIFFE ID ${JSON.stringify(text)}: ${why}`);
  };
  if (typeof text !== 'string') fail('not a string');
  if (text.length > MAX_ID_LENGTH) fail(`longer than ${MAX_ID_LENGTH} bytes`);
  if (!text.startsWith('spiffe://')) fail('scheme must be spiffe://');
  const rest = text.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (!TD_RE.test(trustDomain)) fail('trust domain must be lowercase letters, digits, ".", "-", "_"');
  const segments = path === '' ? [] : path.slice(1).split('/');
  for (const seg of segments) {
    if (seg === '') fail('empty path segment');
    if (seg === '.' || seg === '..') fail('dot segment in path');
    if (!SEGMENT_RE.test(seg)) fail(`path segment ${JSON.stringify(seg)} has a forbidden character`);
  }
  return { id: text, trustDomain, path, segments };
}

/** True when `s` is one valid SPIFFE path segment (a gateway name or device id). */
export function isPathSegment(s: string): boolean {
  return typeof s === 'string' && s.length <= 255 && SEGMENT_RE.test(s) && s !== '.' && s !== '..';
}

/** Validate a trust domain name (no scheme). Throws `ERR_SPIFFE_ID_INVALID`. */
export function parseTrustDomain(text: string): string {
  if (typeof text !== 'string' || !TD_RE.test(text)) {
    throw new SpiffeError('ERR_SPIFFE_ID_INVALID', `invalid trust domain ${JSON.stringify(text)}`);
  }
  return text;
}

/** Build `spiffe://<td>/<segments...>`, validating each part. */
export function formatSpiffeId(trustDomain: string, ...segments: string[]): string {
  return parseSpiffeId(`spiffe://${trustDomain}${segments.map((s) => `/${s}`).join('')}`).id;
}

/** `spiffe://<td>/gateway/<name>` */
export function gatewayId(trustDomain: string, name: string): string {
  return formatSpiffeId(trustDomain, 'gateway', name);
}

/** `<gatewayId>/device/<deviceId>` */
export function deviceSpiffeId(gatewayIdText: string, deviceId: string): string {
  return parseSpiffeId(`${gatewayIdText}/device/${deviceId}`).id;
}

/**
 * The device id when `id` is exactly `<gatewayIdText>/device/<one segment>`, else undefined.
 * This is the path-scoping rule of ARCHITECTURE.md §2 as a function.
 */
export function deviceIdOf(id: string, gatewayIdText: string): string | undefined {
  const prefix = `${gatewayIdText}/device/`;
  if (!id.startsWith(prefix)) return undefined;
  const rest = id.slice(prefix.length);
  return SEGMENT_RE.test(rest) && rest !== '.' && rest !== '..' ? rest : undefined;
}

/** The workload name when `id` is exactly `<gatewayIdText>/workload/<one segment>`, else undefined. */
export function workloadNameOf(id: string, gatewayIdText: string): string | undefined {
  const prefix = `${gatewayIdText}/workload/`;
  if (!id.startsWith(prefix)) return undefined;
  const rest = id.slice(prefix.length);
  return SEGMENT_RE.test(rest) && rest !== '.' && rest !== '..' ? rest : undefined;
}

/**
 * True when a gateway's delegated CA (`caIdText`) may vouch for `id`: exactly
 * `<gateway ID>/device/<one segment>` or `<gateway ID>/workload/<one segment>` (ARCHITECTURE.md §2).
 */
export function inDelegatedScope(id: string, caIdText: string): boolean {
  return deviceIdOf(id, caIdText) !== undefined || workloadNameOf(id, caIdText) !== undefined;
}

/** True when `id` lies strictly under `parent` (segment-wise, never a string prefix). */
export function isUnder(id: string, parent: string): boolean {
  return id.startsWith(`${parent}/`) && id.length > parent.length + 1;
}
