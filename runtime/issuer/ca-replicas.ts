/**
 * Which CA keys each replica holds, as each replica says itself: a heartbeat record
 * (`replica/<instance>`: when, and the fingerprints of the CA certificates whose keys it holds)
 * written at start and at every CA poll, deleted when the replica closes; each write notifies
 * `BEAT_CHANNEL`. A replica that has not
 * written for `REPLICA_LIVE_POLLS` polls is taken for gone (killed, or scaled down). `ca rotate`
 * reads them to refuse a switch a live replica could not follow (it lacks the next key), and
 * `ca show` lists them. Keys never leave a replica; only certificate fingerprints are written.
 *
 * @example
 * ```ts
 * await writeBeat(store, instance, { at: clock.now(), holds: [fp1, fp2] });
 * const live = liveBeats(await listBeats(store), clock.now(), 3 * pollMs);
 * ```
 */
import { K } from './records.ts';
import type { IssuerStore } from './store.ts';

export interface ReplicaBeat {
  /** When the replica wrote it (its clock, ms). */
  at: number;
  /** SHA-256 fingerprints (hex) of the CA certificates whose keys it holds. */
  holds: string[];
}

export interface ReplicaView extends ReplicaBeat {
  readonly id: string;
}

/** Polls without a heartbeat after which a replica is taken for gone. */
export const REPLICA_LIVE_POLLS = 3;

/** The store channel a heartbeat written or dropped notifies (what `ca rotate` waits on). */
export const BEAT_CHANNEL = 'ca_replica';

export async function writeBeat(store: IssuerStore, id: string, beat: ReplicaBeat): Promise<void> {
  await store.batch([
    { type: 'put', key: K.replica(id), value: beat },
    { type: 'notify', channel: BEAT_CHANNEL },
  ]);
}

export async function dropBeat(store: IssuerStore, id: string): Promise<void> {
  await store.batch([
    { type: 'del', key: K.replica(id) },
    { type: 'notify', channel: BEAT_CHANNEL },
  ]);
}

export async function listBeats(store: IssuerStore): Promise<ReplicaView[]> {
  const prefix = K.replica('');
  return (await store.list<ReplicaBeat>(prefix)).map(([k, v]) => ({
    id: k.slice(prefix.length),
    at: v.at,
    holds: v.holds,
  }));
}

/** The replicas heard from within `windowMs` before `now`. */
export function liveBeats(beats: readonly ReplicaView[], now: number, windowMs: number): ReplicaView[] {
  return beats.filter((b) => b.at > now - windowMs);
}

/** Forget replicas not heard from for `staleMs` (default a day). */
export async function pruneBeats(store: IssuerStore, now: number, staleMs = 86_400_000): Promise<void> {
  const gone = (await listBeats(store)).filter((b) => b.at <= now - staleMs);
  if (gone.length > 0) await store.batch(gone.map((b) => ({ type: 'del', key: K.replica(b.id) })));
}
