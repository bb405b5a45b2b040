/**
 * The shared CA record (`meta/bundle`) as one replica follows it: changes are written under the
 * record's version (re-read and re-applied on conflict, `ERR_ISSUER_STORE_CONFLICT` after 16
 * tries) with a new bundle sequence when the root set changed, and notify the `ca` channel; the
 * record is re-read on that notification (from any replica), on a resync and on a poll (with the
 * replica's heartbeat, `ca-replicas.ts`). A change works on the record as it stands now
 * (`effectiveAt`: a switch whose time has come is part of it), so whoever writes first after a
 * scheduled switch also writes the switch down. Each record read or written is handed to `apply`;
 * a record read that is malformed is ERR_ISSUER_CA_INVALID (`checkedBundle`), never applied.
 *
 * @example
 * ```ts
 * const rec = new CaRecord({ store, clock, logger, apply: (meta, version) => view(meta), onPoll: beat });
 * await rec.change((meta) => ({ ...meta, next }));
 * await rec.start();
 * ```
 */
import type { Clock, Timer } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import type { Logger } from '../core/logger.ts';
import { type BundleMeta, checkedBundle, effectiveAt, rootPrints, sameSet, unchanged } from './ca-state.ts';
import { K } from './records.ts';
import type { IssuerStore, StoreSubscription } from './store.ts';

/** The store channel a CA change notifies. */
export const CA_CHANNEL = 'ca';
/** How often a replica re-reads the CA state without being told (backstop) and writes its heartbeat. */
export const CA_POLL_MS = 30_000;
const ATTEMPTS = 16;

export interface CaRecordOptions {
  readonly store: IssuerStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly pollMs?: number;
  /** Told of every record read or written (its store version). */
  readonly apply: (meta: BundleMeta, version: number | undefined) => void;
  /** Also done at every poll (the heartbeat). */
  readonly onPoll: () => Promise<void>;
  /** Told when this replica wrote a scheduled switch down (once across replicas): the record that scheduled it. */
  readonly switched?: (scheduled: BundleMeta) => void;
}

export class CaRecord {
  readonly #o: CaRecordOptions;
  #version: number | undefined;
  #subscription: StoreSubscription | undefined;
  #timer: Timer | undefined;
  #closed = false;

  constructor(o: CaRecordOptions) {
    this.#o = o;
  }

  /** Follow the record: notifications and the poll. */
  async start(): Promise<void> {
    this.#subscription = await this.#o.store.subscribe(CA_CHANNEL, () => {
      this.refresh().catch((e: unknown) =>
        this.#o.logger.warn('CA state refresh failed', { error: String(e) }),
      );
    });
    this.#schedulePoll();
  }

  /** Re-read the record; applied when its version changed. */
  async refresh(): Promise<void> {
    const e = await this.#o.store.getEntry<unknown>(K.bundle);
    if (e !== undefined && e.version !== this.#version) this.#set(checkedBundle(e.value), e.version);
  }

  /**
   * One change: `f` on the record as it stands now (undefined: none yet), written under the
   * version read; on a conflict `f` runs again on the fresh record.
   */
  async change(f: (meta: BundleMeta | undefined) => BundleMeta): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const read = await this.#o.store.getEntry<unknown>(K.bundle);
      const entry = read === undefined ? undefined : { ...read, value: checkedBundle(read.value) };
      const now = this.#o.clock.now();
      const next = f(entry === undefined ? undefined : effectiveAt(entry.value, now));
      const prints = rootPrints(next, now);
      const same = entry !== undefined && sameSet(entry.value.fingerprints, prints);
      const record: BundleMeta = {
        ...next,
        fingerprints: same ? entry.value.fingerprints : prints,
        // A switch come due moved the sequence itself (effectiveAt); a new root set moves it.
        sequence: same ? next.sequence : Math.max(next.sequence, entry?.value.sequence ?? 0) + 1,
      };
      if (entry !== undefined && same && unchanged(entry.value, record)) {
        this.#set(entry.value, entry.version);
        return;
      }
      try {
        const { version } = await this.#o.store.batch([
          entry === undefined
            ? { type: 'absent', key: K.bundle }
            : { type: 'version', key: K.bundle, version: entry.version },
          { type: 'put', key: K.bundle, value: record },
          { type: 'notify', channel: CA_CHANNEL },
        ]);
        if (entry !== undefined && effectiveAt(entry.value, now) !== entry.value)
          this.#o.switched?.(entry.value);
        this.#set(record, version);
        return;
      } catch (err) {
        if (!isEdgewardError(err) || err.code !== 'ERR_ISSUER_STORE_CONFLICT' || attempt >= ATTEMPTS)
          throw err;
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    await this.#subscription?.close();
  }

  #set(meta: BundleMeta, version: number | undefined): void {
    this.#version = version;
    this.#o.apply(meta, version);
  }

  #schedulePoll(): void {
    if (this.#closed) return;
    this.#timer = this.#o.clock.setTimer('issuer-ca-poll', this.#o.pollMs ?? CA_POLL_MS, () => {
      Promise.all([this.refresh(), this.#o.onPoll()])
        .catch((e: unknown) => this.#o.logger.warn('CA state poll failed', { error: String(e) }))
        .finally(() => this.#schedulePoll());
    });
  }
}
