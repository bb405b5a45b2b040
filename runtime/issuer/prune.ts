/**
 * Dropping what expired: sessions, remembered finish answers (`done/`), join tokens, issued records, revocations, rate-limit rows of
 * past windows and retired CAs. A singleton job: with N replicas on one store, only the one
 * holding the store's `prune` lock (`tryLock`: an advisory lock on PostgreSQL) does it; the
 * others only forget expired revocations from their own index. Expired records are found and
 * deleted a page (`PRUNE_PAGE` keys) at a time, so a fleet of a million gateways costs bounded
 * memory and short queries, and a lost lock stops the job between pages.
 */

import type { IssuerCore } from './core.ts';
import { isDoneRecord } from './finish-done.ts';
import type { IssuedRecord, JoinTokenRecord, SessionRecord } from './records.ts';
import type { StoreOp } from './store.ts';

/** The store lock that makes pruning a singleton job across replicas. */
export const PRUNE_LOCK = 'prune';

/** Keys read (and at most deleted) per store call. */
export const PRUNE_PAGE = 1000;

/** Delete the records under `prefix` that `expired` says have lapsed, a page at a time; false when the lock was lost. */
async function dropExpired<T>(
  core: IssuerCore,
  prefix: string,
  expired: (v: T) => boolean,
  lost: AbortSignal,
): Promise<boolean> {
  let gt: string | undefined;
  for (;;) {
    const page = await core.store.list<T>(prefix, { limit: PRUNE_PAGE, ...(gt === undefined ? {} : { gt }) });
    if (lost.aborted) return false;
    const del: StoreOp[] = page.filter(([, v]) => expired(v)).map(([key]) => ({ type: 'del', key }));
    if (del.length > 0) await core.store.batch(del);
    const last = page[page.length - 1];
    if (page.length < PRUNE_PAGE || last === undefined) return true;
    gt = last[0];
  }
}

/** Prune when no other replica is pruning; `false` when another one held the lock. */
export async function prune(core: IssuerCore): Promise<boolean> {
  const lock = await core.store.tryLock(PRUNE_LOCK);
  if (lock === undefined) {
    core.revocations.forget();
    return false;
  }
  try {
    const now = core.clock.now();
    const done =
      (await dropExpired<SessionRecord>(core, 'session/', (s) => s.expiresAt <= now, lock.lost)) &&
      (await dropExpired<JoinTokenRecord>(core, 'token/', (t) => t.expiresAt <= now, lock.lost)) &&
      // A malformed answer answers nothing (`finish-done.ts`): it goes as if expired.
      (await dropExpired<unknown>(core, 'done/', (d) => !isDoneRecord(d) || d.expiresAt <= now, lock.lost)) &&
      (await dropExpired<IssuedRecord>(core, 'issued/', (r) => r.notAfter <= now, lock.lost));
    if (!done) return false;
    await core.revocations.prune();
    await core.limits.prune();
    await core.cas.prune();
    return true;
  } finally {
    await lock.release();
  }
}
