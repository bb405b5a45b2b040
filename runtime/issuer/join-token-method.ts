/**
 * join-token attestation: begin looks up the one-time token by its SHA-256 (only the hash is
 * stored) and binds the session to its gateway; finish deletes the token in the issuance batch
 * under a `present` precondition, so a token gives exactly one identity across replicas.
 */
import { createHash } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import { type IssuerCore, methodDisabled } from './core.ts';
import { type JoinTokenRecord, K, type SessionRecord } from './records.ts';
import type { StoreOp } from './store.ts';

const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex');

const invalid = (): IssuerError =>
  new IssuerError('ERR_ISSUER_TOKEN_INVALID', 'join token unknown, used or expired');

/** Fill `session` for a join token (gateway, token hash); refused when the token is not usable. */
export async function joinTokenBegin(core: IssuerCore, token: string, session: SessionRecord): Promise<void> {
  if (core.methods.joinToken?.enabled !== true) throw methodDisabled('join-token');
  const hash = sha256hex(token);
  const t = await core.store.get<JoinTokenRecord>(K.token(hash));
  if (t === undefined || t.expiresAt <= core.clock.now()) throw invalid();
  session.gateway = t.name;
  session.tokenHash = hash;
}

/**
 * The store ops consuming the session's token, to go into the issuance batch: the token must
 * still be there when the batch commits (`present`), so of several sessions begun with one token
 * (on any replicas) exactly one issues; the others fail with ERR_ISSUER_TOKEN_INVALID.
 */
export async function joinTokenFinish(core: IssuerCore, s: SessionRecord): Promise<StoreOp[]> {
  const key = K.token(s.tokenHash ?? '');
  const t = await core.store.get<JoinTokenRecord>(key);
  if (t === undefined || t.expiresAt <= core.clock.now()) throw invalid();
  return [
    { type: 'present', key },
    { type: 'del', key },
  ];
}
