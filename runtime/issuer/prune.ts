/**
 * Dropping what expired: sessions, remembered attest answers (`done/`), join tokens, issued records, revocations, rate-limit rows of
 * past windows and retired CAs. A singleton job: with N replicas on one store, only the one
 * holding the store's `prune` lock (`tryLock`: an advisory lock on PostgreSQL) does it; the
 * others only forget expired revocations from their own index.
 */
import type { DoneRecord } from './attest-done.ts';
import type { IssuerCore } from './core.ts';
import type { IssuedRecord, JoinTokenRecord, SessionRecord } from './records.ts';
import type { StoreOp } from './store.ts';

/** The store lock that makes pruning a singleton job across replicas. */
export const PRUNE_LOCK = 'prune';

/** Prune when no other replica is pruning; `false` when another one held the lock. */
export async function prune(core: IssuerCore): Promise<boolean> {
  const lock = await core.store.tryLock(PRUNE_LOCK);
  if (lock === undefined) {
    core.revocations.forget();
    return false;
  }
  try {
    const now = core.clock.now();
    const del: StoreOp[] = [];
    for (const [k, s] of await core.store.list<SessionRecord>('session/'))
      if (s.expiresAt <= now) del.push({ type: 'del', key: k });
    for (const [k, t] of await core.store.list<JoinTokenRecord>('token/'))
      if (t.expiresAt <= now) del.push({ type: 'del', key: k });
    for (const [k, d] of await core.store.list<DoneRecord>('done/'))
      if (d.expiresAt <= now) del.push({ type: 'del', key: k });
    for (const [k, r] of await core.store.list<IssuedRecord>('issued/'))
      if (r.notAfter <= now) del.push({ type: 'del', key: k });
    if (lock.lost.aborted) return false;
    await core.store.batch(del);
    await core.revocations.prune();
    await core.limits.prune();
    await core.cas.prune();
    return true;
  } finally {
    await lock.release();
  }
}
