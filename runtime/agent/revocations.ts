/**
 * What this gateway knows to be revoked, from the issuer's feed (`RevocationFeed`). Entries
 * are kept until their `until` (the last NotAfter they can affect), then forgotten. `apply`
 * returns only what is newly revoked, so the transport closes each session once.
 *
 * Implements `RevocationSource` (runtime/sources/types.ts).
 */
import type { Logger } from '../core/logger.ts';
import { Listeners } from '../sources/listeners.ts';
import type { RevocationSource, Unsubscribe } from '../sources/types.ts';
import { normalizeSerial } from '../spiffe/cert-facts.ts';
import type { RevocationRecord } from '../store/records.ts';
import type { RevocationFeed } from '../upstream/protocol.ts';

type Entry = RevocationRecord['entries'][number];
type Revoked = { spiffeIds: readonly string[]; serials: readonly string[] };

export class RevocationSet implements RevocationSource {
  #sequence = 0;
  readonly #ids = new Map<string, Entry>();
  readonly #serials = new Map<string, Entry>();
  readonly #listeners: Listeners<[Revoked]>;

  constructor(logger: Logger, initial?: RevocationRecord) {
    this.#listeners = new Listeners('revocations', logger);
    if (initial !== undefined) {
      this.#sequence = initial.sequence;
      for (const e of initial.entries) this.#add(e);
    }
  }

  get sequence(): number {
    return this.#sequence;
  }

  get size(): number {
    return this.#ids.size + this.#serials.size;
  }

  isRevokedId(spiffeId: string): boolean {
    return this.#ids.has(spiffeId);
  }

  isRevokedSerial(serialHex: string): boolean {
    return this.#serials.has(normalizeSerial(serialHex));
  }

  onRevoke(listener: (revoked: Revoked) => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  /** Merge a feed page; entries already past `until` at `now` are ignored. Returns what is new. */
  apply(feed: RevocationFeed, now: number): Revoked {
    const spiffeIds: string[] = [];
    const serials: string[] = [];
    for (const e of feed.entries ?? []) {
      if (!validEntry(e) || e.until <= now) continue;
      const map = e.kind === 'spiffe-id' ? this.#ids : this.#serials;
      const key = e.kind === 'serial' ? normalizeSerial(e.value) : e.value;
      if (map.has(key)) continue;
      this.#add({ ...e, value: key });
      (e.kind === 'spiffe-id' ? spiffeIds : serials).push(key);
    }
    if (Number.isSafeInteger(feed.sequence) && feed.sequence > this.#sequence) this.#sequence = feed.sequence;
    if (spiffeIds.length + serials.length > 0) this.#listeners.emit({ spiffeIds, serials });
    return { spiffeIds, serials };
  }

  /** Forget entries whose `until` has passed; returns how many. */
  prune(now: number): number {
    let n = 0;
    for (const map of [this.#ids, this.#serials])
      for (const [k, e] of map)
        if (e.until <= now) {
          map.delete(k);
          n++;
        }
    return n;
  }

  toRecord(): RevocationRecord {
    return { sequence: this.#sequence, entries: [...this.#ids.values(), ...this.#serials.values()] };
  }

  clearListeners(): void {
    this.#listeners.clear();
  }

  #add(e: Entry): void {
    (e.kind === 'spiffe-id' ? this.#ids : this.#serials).set(e.value, e);
  }
}

function validEntry(e: unknown): e is Entry {
  if (e === null || typeof e !== 'object') return false;
  const x = e as Record<string, unknown>;
  return (
    (x.kind === 'spiffe-id' || x.kind === 'serial') &&
    typeof x.value === 'string' &&
    x.value.length > 0 &&
    typeof x.until === 'number' &&
    typeof x.sequence === 'number'
  );
}
