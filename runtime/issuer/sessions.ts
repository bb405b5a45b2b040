/**
 * Sessions: single-use records binding a nonce to a gateway (attestation, renewal, recovery).
 * Consumption is one batch `[version N, del]` on the session read: of any number of callers on
 * any number of replicas, exactly one deletes it and goes on; the others are refused as a replay
 * (no in-process bookkeeping: the store decides). A session is used up by the attempt, whatever
 * its outcome, so a failed proof is never retried with the same nonce; what the attempt gives
 * (a join token's identity) is consumed again in the issuance batch itself (`issue.ts`).
 */

import { isEdgewardError } from '../core/error.ts';
import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import type { IssuerCore } from './core.ts';
import { type GatewayRecord, K, type SessionRecord } from './records.ts';

const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

const replay = (): IssuerError =>
  new IssuerError('ERR_ISSUER_SESSION_UNKNOWN', 'unknown or already used session (replay)');

export async function consumeSession(
  core: Pick<IssuerCore, 'store' | 'clock'>,
  id: string,
  kind: SessionRecord['kind'],
): Promise<SessionRecord> {
  // Session ids are 24 base64url characters (18 random bytes); anything else was never handed out.
  if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw replay();
  const key = K.session(id);
  const e = await core.store.getEntry<SessionRecord>(key);
  if (e === undefined || e.value.kind !== kind) throw replay();
  try {
    await core.store.batch([
      { type: 'version', key, version: e.version },
      { type: 'del', key },
    ]);
  } catch (err) {
    if (isEdgewardError(err) && err.code === 'ERR_ISSUER_STORE_CONFLICT') throw replay();
    throw err;
  }
  if (e.value.expiresAt <= core.clock.now())
    throw new IssuerError('ERR_ISSUER_SESSION_EXPIRED', 'session expired');
  return e.value;
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
