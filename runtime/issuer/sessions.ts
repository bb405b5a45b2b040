/**
 * Sessions: single-use records binding a nonce to a gateway (attestation, renewal, recovery).
 * Consumption is `[version N, del]` on the session read, inside the issuance batch itself (one
 * transaction: the session, the join token a join-token session carries, the gateway record, the
 * issued records and the next session commit together or not at all): of any number of callers
 * on any number of replicas, exactly one commits; the others are refused as a replay (no
 * in-process bookkeeping: the store decides). A session is used up by the attempt, whatever its
 * outcome: a refused attempt deletes it on its own, so a failed proof is never retried with the
 * same nonce.
 */

import { isEdgewardError } from '../core/error.ts';
import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import type { IssuerCore } from './core.ts';
import { type GatewayRecord, K, type SessionRecord } from './records.ts';
import type { StoreEntry, StoreOp } from './store.ts';

const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

const replay = (): IssuerError =>
  new IssuerError('ERR_ISSUER_SESSION_UNKNOWN', 'unknown or already used session (replay)');

/** The store key of session `id`; undefined for an id that was never handed out. */
export function sessionKey(id: unknown): string | undefined {
  // Session ids are 24 base64url characters (18 random bytes); anything else was never handed out.
  return typeof id === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(id) ? K.session(id) : undefined;
}

/**
 * Uses session `id` up in what `fn` does with it. `fn` gets the session and the ops consuming it
 * (`[version N, del]`), which it puts into its issuance batch: of any number of callers on any
 * number of replicas, exactly one batch commits with them; the others conflict and are refused as
 * a replay (`issue.ts`). When `fn` (or the expiry check) refuses, the session is deleted on its
 * own before the refusal is answered, so a failed proof is never retried with the same nonce.
 */
export async function withSession<T>(
  core: Pick<IssuerCore, 'store' | 'clock' | 'logger'>,
  id: string,
  kind: SessionRecord['kind'],
  fn: (s: SessionRecord, consume: StoreOp[]) => Promise<T>,
  /** The session's entry as the caller already read it (`sessionKey(id)`, in its own round trip). */
  preread?: { readonly entry: StoreEntry<unknown> | undefined },
): Promise<T> {
  const key = sessionKey(id);
  if (key === undefined) throw replay();
  const e = (preread !== undefined ? preread.entry : await core.store.getEntry(key)) as
    | StoreEntry<SessionRecord>
    | undefined;
  if (e === undefined || e.value.kind !== kind) throw replay();
  const consume: StoreOp[] = [
    { type: 'version', key, version: e.version },
    { type: 'del', key },
  ];
  try {
    if (e.value.expiresAt <= core.clock.now())
      throw new IssuerError('ERR_ISSUER_SESSION_EXPIRED', 'session expired');
    return await fn(e.value, consume);
  } catch (err) {
    // Used up by the attempt. A conflict means another attempt (or the issuance) already did.
    await core.store.batch(consume).catch((cause: unknown) => {
      if (!isEdgewardError(cause) || cause.code !== 'ERR_ISSUER_STORE_CONFLICT')
        core.logger.warn('issuer: a refused session could not be deleted', { error: String(cause) });
    });
    throw err;
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
