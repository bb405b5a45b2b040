/**
 * The upstream JWT-SVID call (`POST /v1/jwt-svid`, over mTLS with the gateway SVID): a gateway
 * asks for a JWT-SVID for one of ITS workloads, `spiffe://<td>/gateway/<gw>/workload/<name>`
 * (path scoped: another gateway's workload, a device or any other path is refused with
 * ERR_ISSUER_JWT_SCOPE), for an audience list of 1..16 strings of 1..256 characters. The token
 * lives `jwtSvid.ttl` (default 5 min), signed with the active JWT key (`jwt-keys.ts`) through the
 * `CaKey` seam. Counted against the gateway's JWT rate limit (its own bucket, so workloads
 * asking for tokens never eat the gateway's renewal budget) and audited (event `jwt`).
 */
import { IssuerError } from '../errors.ts';
import { gatewayId, workloadNameOf } from '../spiffe/id.ts';
import { signJwtSvid } from '../svid/jwt-svid.ts';
import {
  JWT_SVID_MAX_AUDIENCE_LENGTH,
  JWT_SVID_MAX_AUDIENCES,
  type JwtSvidRequest,
  type JwtSvidResponse,
} from '../upstream/protocol.ts';
import type { AuditInfo, IssuerCore, RequestContext } from './core.ts';
import type { JwtKeySet } from './jwt-keys.ts';
import { authenticatePeer } from './peer.ts';

export const DEFAULT_JWT_SVID_TTL_MS = 5 * 60_000;
/** The bounds of `jwtSvid.ttl`. */
export const MIN_JWT_SVID_TTL_MS = 30_000;
export const MAX_JWT_SVID_TTL_MS = 60 * 60_000;
const MAX_AUDIENCES = JWT_SVID_MAX_AUDIENCES;
const MAX_AUDIENCE_LENGTH = JWT_SVID_MAX_AUDIENCE_LENGTH;

export interface JwtSvidIssuing {
  readonly keys: JwtKeySet;
  readonly ttlMs: number;
  /** Count one request of gateway `name` (ERR_ISSUER_RATE_LIMITED). */
  limit(name: string): Promise<void>;
}

const bad = (why: string): IssuerError => new IssuerError('ERR_ISSUER_BAD_REQUEST', why);

/** The request's shape: `spiffeId` a string, `audience` 1..16 distinct printable strings. */
export function jwtSvidRequest(body: unknown): JwtSvidRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body) || body instanceof Uint8Array)
    throw bad('body must be a CBOR map');
  const o = body as Record<string, unknown>;
  const id = Object.hasOwn(o, 'spiffeId') ? o.spiffeId : undefined;
  if (typeof id !== 'string' || id.length === 0 || id.length > 2048)
    throw bad('spiffeId must be a string of 1..2048');
  const aud = Object.hasOwn(o, 'audience') ? o.audience : undefined;
  if (!Array.isArray(aud) || aud.length === 0 || aud.length > MAX_AUDIENCES)
    throw bad(`audience must be a list of 1..${MAX_AUDIENCES} strings`);
  for (const a of aud)
    if (
      typeof a !== 'string' ||
      a.length === 0 ||
      a.length > MAX_AUDIENCE_LENGTH ||
      // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
      /[\u0000-\u001f\u007f]/.test(a)
    )
      throw bad(`each audience must be a printable string of 1..${MAX_AUDIENCE_LENGTH}`);
  if (new Set(aud).size !== aud.length) throw bad('audience has duplicates');
  return { spiffeId: id, audience: [...(aud as string[])] };
}

export async function issueJwtSvid(
  core: IssuerCore,
  jwt: JwtSvidIssuing,
  body: unknown,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<JwtSvidResponse> {
  const gw = await authenticatePeer(core, ctx, info);
  const req = jwtSvidRequest(body);
  const own = gatewayId(core.trustDomain, gw.name);
  info.spiffeId = req.spiffeId;
  if (workloadNameOf(req.spiffeId, own) === undefined)
    throw new IssuerError(
      'ERR_ISSUER_JWT_SCOPE',
      `gateway ${gw.name} may ask JWT-SVIDs only for ${own}/workload/<name>, not ${req.spiffeId}`,
    );
  // A replica that cannot sign refuses before the gateway's budget is counted (it retries elsewhere).
  await jwt.keys.signerNow();
  await jwt.limit(gw.name);
  // The lifetime is at most what the key's record promises (how long it stays published once retired).
  const { key, kid, ttlMs } = jwt.keys.signer();
  const now = core.clock.now();
  const iat = Math.floor(now / 1000);
  const exp = Math.floor((now + ttlMs) / 1000);
  const token = await signJwtSvid(key, kid, { sub: req.spiffeId, aud: req.audience, iat, exp });
  await core.audit.write({
    event: 'jwt',
    method: gw.method,
    gateway: gw.name,
    spiffeId: req.spiffeId,
    address: ctx.address,
    detail: `JWT-SVID kid ${kid} exp ${exp} aud ${JSON.stringify(req.audience)}`,
  });
  return { token, expiresAt: exp * 1000 };
}
