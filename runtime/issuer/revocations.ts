/**
 * Revocations: SPIFFE IDs (a gateway, a device) and certificate serials, each with a sequence
 * and an `until` (the latest NotAfter of what it affects), after which it is dropped. The store
 * is the record and assigns the sequence in the revoking batch itself (`put-next`), so commit
 * order is sequence order on any number of replicas; an in-memory index answers lookups and
 * follows the store: a notification on the `revocations` channel (LISTEN/NOTIFY on PostgreSQL)
 * or a `resync` (the connection came back) makes it read everything after the last sequence it
 * has seen; a poll is the backstop.
 *
 * @example
 * ```ts
 * const rev = await Revocations.load(store, clock);
 * await store.batch([...rev.ops('serial', 'ab12', until)]);  await rev.refresh();
 * rev.isRevokedId(spiffeId); rev.feed(since);
 * ```
 */
import type { Clock, Timer } from '../core/clock.ts';
import { type Logger, nullLogger } from '../core/logger.ts';
import type { RevocationFeed } from '../upstream/protocol.ts';
import { K, type RevocationRecord } from './records.ts';
import type { IssuerStore, StoreOp, StoreSubscription } from './store.ts';

/** The store channel a revoking batch notifies, and the store sequence it allocates from. */
export const REVOCATION_CHANNEL = 'revocations';
const SEQUENCE = 'revocation';
/** How often the index re-reads the store without being told (backstop for a lost notification). */
export const REVOCATION_POLL_MS = 10_000;

/** The revocation feed against the store (metrics: `edgeward_issuer_revocation_feed_lag`). */
export interface RevocationFeedState {
  /** The newest revocation sequence this replica applied. */
  readonly applied: number;
  /** The newest revocation sequence in the store. */
  readonly newest: number;
  /** When this replica last read the store's revocations successfully (clock ms). */
  readonly refreshedAt?: number;
}

export class Revocations {
  readonly #store: IssuerStore;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #pollMs: number;
  /** Sequences before the store assigned them (`meta/revseq` of a store written before): new ones follow. */
  #base = 0;
  #sequence = 0;
  #entries: RevocationRecord[] = [];
  #subscription: StoreSubscription | undefined;
  #timer: Timer | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #waiters: { sequence: number; resolve: () => void }[] = [];
  #closed = false;
  /** When the last read of the store succeeded (clock ms). */
  #refreshedAt: number | undefined;

  private constructor(store: IssuerStore, clock: Clock, logger: Logger, pollMs: number) {
    this.#store = store;
    this.#clock = clock;
    this.#log = logger;
    this.#pollMs = pollMs;
  }

  static async load(
    store: IssuerStore,
    clock: Clock,
    o: { logger?: Logger; pollMs?: number } = {},
  ): Promise<Revocations> {
    const r = new Revocations(store, clock, o.logger ?? nullLogger, o.pollMs ?? REVOCATION_POLL_MS);
    r.#base = (await store.get<number>(K.revSeq)) ?? 0;
    r.#subscription = await store.subscribe(REVOCATION_CHANNEL, () => {
      r.refresh().catch((e: unknown) => r.#log.warn('revocation refresh failed', { error: String(e) }));
    });
    await r.refresh();
    r.#schedulePoll();
    return r;
  }

  get sequence(): number {
    return this.#sequence;
  }

  /** The ops of a new revocation: the record under the next store sequence, and the notification. */
  ops(kind: RevocationRecord['kind'], value: string, until: number): StoreOp[] {
    const base = this.#base;
    return [
      {
        type: 'put-next',
        sequence: SEQUENCE,
        key: (n) => K.revocation(base + n),
        value: (n): RevocationRecord => ({ sequence: base + n, kind, value, until }),
      },
      { type: 'notify', channel: REVOCATION_CHANNEL },
    ];
  }

  /** The revocation sequence of a batch's result (its first `put-next`). */
  sequenceOf(allocated: readonly number[]): number {
    return this.#base + (allocated[0] ?? 0);
  }

  /** Read every revocation committed after the last one this index has (one read at a time). */
  refresh(): Promise<void> {
    if (this.#running !== undefined) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        do {
          this.#again = false;
          const rows = await this.#store.list<RevocationRecord>('rev/', { gt: K.revocation(this.#sequence) });
          for (const [, e] of rows) {
            if (e.sequence <= this.#sequence) continue;
            this.#entries.push(e);
            this.#sequence = e.sequence;
          }
          const ready = this.#waiters.filter((w) => w.sequence <= this.#sequence);
          this.#waiters = this.#waiters.filter((w) => w.sequence > this.#sequence);
          for (const w of ready) w.resolve();
          this.#refreshedAt = this.#clock.now();
        } while (this.#again && !this.#closed);
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  /**
   * The feed's lag, for metrics: the newest revocation in the store (one keyed read), the newest
   * this index applied, and when it last read the store. Pruned entries are gone from both sides.
   */
  async state(): Promise<RevocationFeedState> {
    const [last] = await this.#store.list<RevocationRecord>('rev/', { reverse: true, limit: 1 });
    const applied = this.#sequence;
    return {
      applied,
      newest: Math.max(applied, last?.[1].sequence ?? 0),
      ...(this.#refreshedAt === undefined ? {} : { refreshedAt: this.#refreshedAt }),
    };
  }

  /** When this index last read the store successfully (clock ms). */
  get refreshedAt(): number | undefined {
    return this.#refreshedAt;
  }

  /** Resolves once this index has seen revocation `sequence`. */
  whenSeen(sequence: number): Promise<void> {
    if (sequence <= this.#sequence) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ sequence, resolve }));
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

  /** Drop entries whose affected certificates have all expired (from the store: the pruning replica). */
  async prune(): Promise<number> {
    const now = this.#clock.now();
    const gone = this.#entries.filter((e) => e.until <= now);
    if (gone.length === 0) return 0;
    await this.#store.batch(gone.map((e) => ({ type: 'del' as const, key: K.revocation(e.sequence) })));
    this.forget();
    return gone.length;
  }

  /** Drop expired entries from the index only (every replica, on its own). */
  forget(): void {
    const now = this.#clock.now();
    this.#entries = this.#entries.filter((e) => e.until > now);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    await this.#subscription?.close();
  }

  #schedulePoll(): void {
    if (this.#closed) return;
    this.#timer = this.#clock.setTimer('issuer-revocation-poll', this.#pollMs, () => {
      this.refresh()
        .catch((e: unknown) => this.#log.warn('revocation poll failed', { error: String(e) }))
        .finally(() => this.#schedulePoll());
    });
  }
}
