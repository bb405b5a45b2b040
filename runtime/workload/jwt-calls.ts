/**
 * The Workload API's two unary JWT calls, given an already-checked call (metadata) and a way to
 * learn its caller's entries (attestation, which runs only once the request itself is well formed):
 * `FetchJWTSVID` answers one token per entry of the caller (or only the `spiffe_id` asked for,
 * PERMISSION_DENIED when the caller is not entitled to it) for the audience list (empty:
 * INVALID_ARGUMENT), from the cache in front of the issuer (`jwt-svids.ts`); `ValidateJWTSVID`
 * checks a token against the trust domain's keys and the audience (`jwt.ts`; a token that fails,
 * garbage included, and an empty audience or token: INVALID_ARGUMENT). Failures are thrown as the
 * gRPC status to answer with.
 */
import * as grpc from '@grpc/grpc-js';
import { isEdgewardError } from '../core/error.ts';
import type { Logger } from '../core/logger.ts';
import { RuntimeError } from '../errors.ts';
import { JWT_SVID_MAX_AUDIENCE_LENGTH, JWT_SVID_MAX_AUDIENCES } from '../upstream/protocol.ts';
import type { WorkloadEntry } from './entries.ts';
import { toStruct, validateJwtSvid } from './jwt.ts';
import type { JwtSvidCache } from './jwt-svids.ts';
import { type WorkloadHost, workloadId } from './svids.ts';

export type Status = { code: grpc.status; details: string };
export const deny = (details: string): Status => ({ code: grpc.status.PERMISSION_DENIED, details });
export const invalid = (details: string): Status => ({ code: grpc.status.INVALID_ARGUMENT, details });
export const unavailable = (err: unknown): Status => ({
  code: grpc.status.UNAVAILABLE,
  details: `identity unavailable (${isEdgewardError(err) ? err.code : 'unknown'})`,
});

export interface JwtCallContext {
  readonly host: WorkloadHost;
  readonly jwt: JwtSvidCache;
  readonly logger: Logger;
  /** The entries of the call's caller (attested now); throws the Status to answer with. */
  caller(): Promise<readonly WorkloadEntry[]>;
}

export async function fetchJwtSvid(request: unknown, c: JwtCallContext): Promise<unknown> {
  const req = request as { audience?: string[]; spiffe_id?: string };
  const audience = req.audience ?? [];
  if (audience.length === 0) throw invalid('audience must be specified');
  if (
    audience.length > JWT_SVID_MAX_AUDIENCES ||
    audience.some((a) => a.length === 0 || a.length > JWT_SVID_MAX_AUDIENCE_LENGTH)
  )
    throw invalid(
      `audience: 1..${JWT_SVID_MAX_AUDIENCES} values of 1..${JWT_SVID_MAX_AUDIENCE_LENGTH} characters`,
    );
  const entries = await c.caller();
  const gw = c.host.caIdentity()?.svid.spiffeId;
  if (gw === undefined) throw unavailable(new RuntimeError('ERR_SVID_UNAVAILABLE', 'no gateway identity'));
  let ids = entries.map((e) => ({ id: workloadId(gw, e.name), hint: e.hint ?? '' }));
  if (req.spiffe_id !== undefined && req.spiffe_id !== '') {
    ids = ids.filter((i) => i.id === req.spiffe_id);
    if (ids.length === 0) throw deny(`no entitlement to ${req.spiffe_id}`);
  }
  try {
    const svids = await Promise.all(ids.map((i) => c.jwt.get(i.id, audience)));
    return { svids: svids.map((s, k) => ({ spiffe_id: s.spiffeId, svid: s.token, hint: ids[k]?.hint })) };
  } catch (err) {
    c.logger.warn('JWT-SVID unavailable', {
      event: 'workload.jwt_unavailable',
      reason: isEdgewardError(err) ? err.code : 'unknown',
    });
    throw unavailable(err);
  }
}

export async function validateJwtSvidCall(request: unknown, c: JwtCallContext): Promise<unknown> {
  const req = request as { audience?: string; svid?: string };
  if (!req.audience) throw invalid('audience must be specified');
  if (!req.svid) throw invalid('svid must be specified');
  await c.caller();
  const keys = c.host.jwtKeys?.();
  if (keys === undefined) throw unavailable(new RuntimeError('ERR_BUNDLE_UNAVAILABLE', 'no bundle'));
  try {
    const v = await validateJwtSvid(req.svid, req.audience, {
      trustDomain: c.host.trustDomain,
      keys,
      now: c.host.now(),
    });
    return { spiffe_id: v.spiffeId, claims: toStruct(v.claims as Record<string, unknown>) };
  } catch (err) {
    throw invalid((err as Error).message);
  }
}
