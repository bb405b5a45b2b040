/**
 * What an operator looks at (read-only): gateways, one gateway, the join tokens waiting to be
 * used (name and expiry; the token itself is never stored), revocations. Each answer is plain
 * JSON-safe data (binary fields left out or as hex), bounded by `limit`.
 */
import { IssuerError } from '../errors.ts';
import type { IssuerCore } from './core.ts';
import { type GatewayRecord, type JoinTokenRecord, K, type RevocationRecord } from './records.ts';

export interface GatewayView {
  name: string;
  disabled: boolean;
  revoked: boolean;
  method: string;
  createdAt: number;
  lastIssuedAt?: number;
  maxNotAfter: number;
  offlineBudgetMs?: number;
  firmware?: string;
  ekHash?: string;
  deviceCas: { serial: string; notAfter: number }[];
}

export const MAX_LIST = 10_000;

function view(core: IssuerCore, gw: GatewayRecord): GatewayView {
  return {
    name: gw.name,
    disabled: gw.disabled,
    revoked: core.isRevokedId(`spiffe://${core.trustDomain}/gateway/${gw.name}`),
    method: gw.method,
    createdAt: gw.createdAt,
    ...(gw.lastIssuedAt === undefined ? {} : { lastIssuedAt: gw.lastIssuedAt }),
    maxNotAfter: gw.maxNotAfter,
    ...(gw.offlineBudgetMs === undefined ? {} : { offlineBudgetMs: gw.offlineBudgetMs }),
    ...(gw.firmware === undefined ? {} : { firmware: gw.firmware }),
    ...(gw.ekHash === undefined ? {} : { ekHash: gw.ekHash }),
    deviceCas: gw.deviceCas ?? [],
  };
}

function checkLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST)
    throw new IssuerError('ERR_ISSUER_BAD_REQUEST', `limit must be 1..${MAX_LIST}`);
}

/** Gateways in name order, after `after` (exclusive), at most `limit`. */
export async function listGateways(core: IssuerCore, after: string, limit: number): Promise<GatewayView[]> {
  checkLimit(limit);
  const rows = await core.store.list<GatewayRecord>('gw/', {
    ...(after === '' ? {} : { gt: K.gateway(after) }),
    limit,
  });
  return rows.map(([, gw]) => view(core, gw));
}

export async function showGateway(core: IssuerCore, name: string): Promise<GatewayView> {
  core.checkName(name);
  const gw = await core.store.get<GatewayRecord>(K.gateway(name));
  if (gw === undefined) throw new IssuerError('ERR_ISSUER_NOT_FOUND', `no gateway ${name}`);
  return view(core, gw);
}

/** Unexpired join tokens: the gateway they are for, when made and when they expire, and a hash prefix as id. */
export async function listTokens(
  core: IssuerCore,
  limit: number,
): Promise<{ id: string; name: string; createdAt: number; expiresAt: number }[]> {
  checkLimit(limit);
  const now = core.clock.now();
  return (await core.store.list<JoinTokenRecord>('token/', { limit }))
    .filter(([, t]) => t.expiresAt > now)
    .map(([k, t]) => ({ id: k.slice('token/'.length, 'token/'.length + 12), ...t }));
}

export async function listRevocations(core: IssuerCore, limit: number): Promise<RevocationRecord[]> {
  checkLimit(limit);
  return (await core.store.list<RevocationRecord>('rev/', { limit })).map(([, r]) => r);
}
