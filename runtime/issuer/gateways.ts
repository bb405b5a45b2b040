/** Checks on a gateway every handler shares: a usable name, and a gateway neither disabled nor revoked. */
import { IssuerError } from '../errors.ts';
import { gatewayId, isPathSegment } from '../spiffe/id.ts';
import type { IssuerCore } from './core.ts';
import { type GatewayRecord, K } from './records.ts';

export function checkName(name: string): void {
  if (!isPathSegment(name) || name.length > 64)
    throw new IssuerError(
      'ERR_ISSUER_BAD_REQUEST',
      `gateway name '${String(name).slice(0, 80)}' must be 1-64 of [A-Za-z0-9._-]`,
    );
}

export async function checkGatewayUsable(
  core: Pick<IssuerCore, 'store' | 'trustDomain' | 'revocations'>,
  name: string,
): Promise<GatewayRecord | undefined> {
  const gw = await core.store.get<GatewayRecord>(K.gateway(name));
  if (gw?.disabled === true)
    throw new IssuerError('ERR_ISSUER_GATEWAY_DISABLED', `gateway ${name} is disabled`);
  if (core.revocations.isRevokedId(gatewayId(core.trustDomain, name)))
    throw new IssuerError('ERR_ISSUER_REVOKED', `gateway ${name} is revoked`);
  return gw;
}
