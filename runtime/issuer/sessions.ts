/**
 * Sessions: single-use records binding a nonce to a gateway (attestation, renewal, recovery).
 * Consumption is get-then-delete; `inFlight` keeps two requests of this process from consuming
 * one session at once (across replicas the store must do it: issue 17 item 2).
 */

import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import type { IssuerCore } from './core.ts';
import { type GatewayRecord, K, type SessionRecord } from './records.ts';

const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

export async function consumeSession(
  core: Pick<IssuerCore, 'store' | 'clock'>,
  inFlight: Set<string>,
  id: string,
  kind: SessionRecord['kind'],
): Promise<SessionRecord> {
  if (inFlight.has(id))
    throw new IssuerError('ERR_ISSUER_SESSION_UNKNOWN', 'session already in use (replay)');
  inFlight.add(id);
  try {
    const key = K.session(id);
    const s = await core.store.get<SessionRecord>(key);
    if (s === undefined || s.kind !== kind)
      throw new IssuerError('ERR_ISSUER_SESSION_UNKNOWN', 'unknown or already used session (replay)');
    await core.store.batch([{ type: 'del', key }]);
    if (s.expiresAt <= core.clock.now())
      throw new IssuerError('ERR_ISSUER_SESSION_EXPIRED', 'session expired');
    return s;
  } finally {
    inFlight.delete(id);
  }
}

export function newRenewSession(
  random: Random,
  pcrSelection: string | undefined,
  gw: GatewayRecord,
  expiresAt: number,
): SessionRecord {
  return {
    id: b64url(random.bytes(18)),
    kind: 'renew',
    method: gw.method,
    nonce: random.bytes(32),
    expiresAt,
    gateway: gw.name,
    ...(gw.method === 'tpm' && pcrSelection !== undefined ? { pcrSelection } : {}),
  };
}
