/** Dropping what expired: sessions, join tokens, issued records, revocations and retired CAs. */
import type { IssuerCore } from './core.ts';
import type { IssuedRecord, JoinTokenRecord, SessionRecord } from './records.ts';
import type { StoreOp } from './store.ts';

export async function prune(core: IssuerCore): Promise<void> {
  const now = core.clock.now();
  const del: StoreOp[] = [];
  for (const [k, s] of await core.store.list<SessionRecord>('session/'))
    if (s.expiresAt <= now) del.push({ type: 'del', key: k });
  for (const [k, t] of await core.store.list<JoinTokenRecord>('token/'))
    if (t.expiresAt <= now) del.push({ type: 'del', key: k });
  for (const [k, r] of await core.store.list<IssuedRecord>('issued/'))
    if (r.notAfter <= now) del.push({ type: 'del', key: k });
  await core.store.batch(del);
  await core.revocations.prune();
  await core.cas.prune();
}
