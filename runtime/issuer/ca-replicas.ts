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

/**
 * Every heartbeat in the store. One read back malformed is checked as live input, denying: a
 * `holds` that is not a list of strings holds nothing (a live replica that `ca rotate` refuses
 * for), an `at` that is not a time is a replica not heard from (not live, pruned).
 */
export async function listBeats(store: IssuerStore): Promise<ReplicaView[]> {
  const prefix = K.replica('');
  return (await store.list<unknown>(prefix)).map(([k, v]) => {
    const b = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
    return {
      id: k.slice(prefix.length),
      at: typeof b.at === 'number' && Number.isFinite(b.at) ? b.at : 0,
      holds: Array.isArray(b.holds) && b.holds.every((x) => typeof x === 'string') ? b.holds : [],
    };
  });
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
