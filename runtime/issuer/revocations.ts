/**
 * Revocations: SPIFFE IDs (a gateway, a device) and certificate serials, each with a
 * monotonically increasing sequence and an `until` (the latest NotAfter of what it affects),
 * after which it is dropped. An in-memory index answers lookups; the store is the record.
 *
 * @example
 * ```ts
 * const rev = await Revocations.load(store, clock);
 * const op = rev.add('serial', 'ab12', until);  await store.batch([...op]);
 * rev.isRevoked({ spiffeId, serialHex }); rev.feed(since);
 * ```
 */
import type { Clock } from '../core/clock.ts';
import type { RevocationFeed } from '../upstream/protocol.ts';
import { K, type RevocationRecord } from './records.ts';
import type { IssuerStore, StoreOp } from './store.ts';

export class Revocations {
  readonly #store: IssuerStore;
  readonly #clock: Clock;
  #sequence = 0;
  #entries: RevocationRecord[] = [];

  private constructor(store: IssuerStore, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  static async load(store: IssuerStore, clock: Clock): Promise<Revocations> {
    const r = new Revocations(store, clock);
    r.#sequence = (await store.get<number>(K.revSeq)) ?? 0;
    r.#entries = (await store.list<RevocationRecord>('rev/')).map(([, v]) => v);
    return r;
  }

  get sequence(): number {
    return this.#sequence;
  }

  /** The store ops for a new revocation; call `commit` with the record after the batch succeeded. */
  prepare(
    kind: RevocationRecord['kind'],
    value: string,
    until: number,
  ): { record: RevocationRecord; ops: StoreOp[] } {
    const record: RevocationRecord = { sequence: this.#sequence + 1, kind, value, until };
    return {
      record,
      ops: [
        { type: 'put', key: K.revocation(record.sequence), value: record },
        { type: 'put', key: K.revSeq, value: record.sequence },
      ],
    };
  }

  commit(record: RevocationRecord): void {
    this.#sequence = record.sequence;
    this.#entries.push(record);
  }

  isRevokedId(spiffeId: string): boolean {
    const now = this.#clock.now();
    return this.#entries.some((e) => e.kind === 'spiffe-id' && e.until > now && e.value === spiffeId);
  }

  isRevokedSerial(serialHex: string): boolean {
    const now = this.#clock.now();
    return this.#entries.some((e) => e.kind === 'serial' && e.until > now && e.value === serialHex);
  }

  /** What came after `since` and still matters now. */
  feed(since: number): RevocationFeed {
    const now = this.#clock.now();
    return {
      sequence: this.#sequence,
      entries: this.#entries
        .filter((e) => e.sequence > since && e.until > now)
        .map((e) => ({ sequence: e.sequence, kind: e.kind, value: e.value, until: e.until })),
    };
  }

  /** Drop entries whose affected certificates have all expired. */
  async prune(): Promise<number> {
    const now = this.#clock.now();
    const gone = this.#entries.filter((e) => e.until <= now);
    if (gone.length === 0) return 0;
    await this.#store.batch(gone.map((e) => ({ type: 'del' as const, key: K.revocation(e.sequence) })));
    this.#entries = this.#entries.filter((e) => e.until > now);
    return gone.length;
  }
}
