/**
 * JWT-SVID validation for the Workload API's `ValidateJWTSVID` (SPIFFE JWT-SVID standard §3,
 * §4), with `jose`: the token is a JWS compact serialization whose header names a `kid` of the
 * trust domain's JWT keys (the bundle the agent holds, `use: "jwt-svid"`), carries no header
 * beyond `alg`, `kid`, `typ` (`JWT` or `JOSE` when present), is signed with an asymmetric
 * algorithm, has `sub` (a SPIFFE ID of the trust domain), `aud` containing the audience asked
 * for, and `exp` in the future at the agent's clock. Any failure is ERR_JWT_SVID_INVALID
 * (the API answers INVALID_ARGUMENT). Also the JWKS bytes `FetchJWTBundles` sends, and the
 * claims as a `google.protobuf.Struct` (protobufjs defines the well-known types with camelCase
 * field names, keepCase or not).
 *
 * @example
 * ```ts
 * const v = await validateJwtSvid(token, 'api.example', { trustDomain, keys, now });
 * v.spiffeId; v.claims.exp
 * ```
 */
import { createLocalJWKSet, decodeProtectedHeader, type JWTPayload, jwtVerify } from 'jose';
import { RuntimeError } from '../errors.ts';
import { parseSpiffeId } from '../spiffe/id.ts';
import type { JwtAuthority } from '../svid/jwt-svid.ts';

/** The asymmetric JWS algorithms a JWT-SVID may use (JWT-SVID §3: never `none` or HMAC). */
export const JWT_SVID_ALGORITHMS = [
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
];
const HEADER_FIELDS = new Set(['alg', 'kid', 'typ']);
const MAX_TOKEN_LENGTH = 16 * 1024;

/** The JWKS document (`{"keys":[...]}`) of the trust domain's JWT keys. */
export function jwksBytes(keys: readonly JwtAuthority[]): Buffer {
  // No `use` member, as go-spiffe's jwtbundle.Marshal writes it: JOSE libraries (jose among
  // them) skip keys whose `use` is not `sig`, and the document is for JWT-SVIDs only anyway.
  return Buffer.from(JSON.stringify({ keys: keys.map((k) => ({ ...k.jwk, kid: k.kid })) }));
}

/** The key set jose verifies against, kept while the keys stay the same (jose caches imported keys in it). */
let lastSet: { sig: string; set: ReturnType<typeof createLocalJWKSet> } | undefined;
function jwkSetFor(keys: readonly JwtAuthority[]): ReturnType<typeof createLocalJWKSet> {
  const sig = JSON.stringify(keys);
  if (lastSet?.sig !== sig)
    lastSet = { sig, set: createLocalJWKSet({ keys: keys.map((k) => ({ ...k.jwk, kid: k.kid })) }) };
  return lastSet.set;
}

export interface ValidatedJwtSvid {
  readonly spiffeId: string;
  readonly claims: JWTPayload;
}

const invalid = (why: string, cause?: unknown): RuntimeError =>
  new RuntimeError(
    'ERR_JWT_SVID_INVALID',
    `JWT-SVID invalid: ${why}`,
    cause === undefined ? undefined : { cause },
  );

export async function validateJwtSvid(
  token: string,
  audience: string,
  o: { readonly trustDomain: string; readonly keys: readonly JwtAuthority[]; readonly now: number },
): Promise<ValidatedJwtSvid> {
  if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw invalid('empty or oversized token');
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch (cause) {
    throw invalid('not a JWS compact serialization', cause);
  }
  const extra = Object.keys(header).filter((k) => !HEADER_FIELDS.has(k));
  if (extra.length > 0) throw invalid(`header carries ${extra.join(', ')}`);
  if (header.typ !== undefined && header.typ !== 'JWT' && header.typ !== 'JOSE')
    throw invalid(`typ ${String(header.typ)}`);
  if (typeof header.kid !== 'string' || header.kid.length === 0) throw invalid('no kid');
  const jwks = jwkSetFor(o.keys);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, jwks, {
      audience,
      algorithms: JWT_SVID_ALGORITHMS,
      currentDate: new Date(o.now),
      requiredClaims: ['sub', 'aud', 'exp'],
    }));
  } catch (cause) {
    throw invalid((cause as Error).message, cause);
  }
  const sub = payload.sub as string;
  let td: string;
  try {
    td = parseSpiffeId(sub).trustDomain;
  } catch (cause) {
    throw invalid('sub is not a SPIFFE ID', cause);
  }
  if (td !== o.trustDomain) throw invalid(`sub is of trust domain ${td}`);
  return { spiffeId: sub, claims: payload };
}

type StructValue =
  | { nullValue: 'NULL_VALUE' }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: { fields: Record<string, StructValue> } }
  | { listValue: { values: StructValue[] } };

function structValue(v: unknown): StructValue {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(structValue) } };
  if (typeof v === 'object') return { structValue: toStruct(v as Record<string, unknown>) };
  return { stringValue: String(v) };
}

/** A JSON object as `google.protobuf.Struct` (protobufjs's camelCase field names of the well-known type). */
export function toStruct(o: Record<string, unknown>): { fields: Record<string, StructValue> } {
  return { fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, structValue(v)])) };
}
