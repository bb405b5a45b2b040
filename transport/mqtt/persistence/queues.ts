/**
 * The outgoing queues of persistent sessions, in memory: per client, the QoS 1/2 messages not yet
 * acknowledged by it (queued while offline, or in flight), in arrival order, each with the
 * journal sequence it is stored under. Bounded: at most `maxPerSession` messages per session and
 * `maxBytes` of payload in all; beyond either, the oldest message (of that session, or of all
 * sessions for the byte cap) is dropped and counted, so a subscriber that never returns cannot
 * fill the gateway's flash.
 */
import type { StoredPacket } from './codec.ts';

export interface QueueEntry {
  readonly seq: number;
  readonly clientId: string;
  packet: StoredPacket;
  readonly bytes: number;
}

export interface QueueLimits {
  readonly maxPerSession: number;
  readonly maxBytes: number;
}

export const DEFAULT_QUEUE_LIMITS: QueueLimits = { maxPerSession: 1000, maxBytes: 16 * 1024 * 1024 };

export class Queues {
  readonly #limits: QueueLimits;
  readonly #byClient = new Map<string, QueueEntry[]>();
  /** Every entry by sequence; a Map keeps insertion order, so the first one is the oldest. */
  readonly #bySeq = new Map<number, QueueEntry>();
  #bytes = 0;
  dropped = 0;

  constructor(limits: QueueLimits) {
    this.#limits = limits;
  }

  get size(): number {
    return this.#bySeq.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get sessions(): number {
    return this.#byClient.size;
  }

  of(clientId: string): readonly QueueEntry[] {
    return this.#byClient.get(clientId) ?? [];
  }

  /** Appends; returns the entries dropped to stay within the limits (their journal keys go too). */
  push(entry: QueueEntry): QueueEntry[] {
    let list = this.#byClient.get(entry.clientId);
    if (list === undefined) {
      list = [];
      this.#byClient.set(entry.clientId, list);
    }
    list.push(entry);
    this.#bySeq.set(entry.seq, entry);
    this.#bytes += entry.bytes;
    const dropped: QueueEntry[] = [];
    while (list.length > this.#limits.maxPerSession) {
      const oldest = list[0] as QueueEntry;
      this.remove(oldest);
      dropped.push(oldest);
    }
    while (this.#bytes > this.#limits.maxBytes && this.#bySeq.size > 0) {
      const oldest = this.#bySeq.values().next().value as QueueEntry;
      this.remove(oldest);
      dropped.push(oldest);
    }
    this.dropped += dropped.length;
    return dropped;
  }

  remove(entry: QueueEntry): void {
    if (!this.#bySeq.delete(entry.seq)) return;
    this.#bytes -= entry.bytes;
    const list = this.#byClient.get(entry.clientId);
    if (list === undefined) return;
    const i = list.indexOf(entry);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#byClient.delete(entry.clientId);
  }

  /** Removes and returns all entries of one client. */
  clear(clientId: string): QueueEntry[] {
    const list = [...(this.#byClient.get(clientId) ?? [])];
    for (const e of list) this.remove(e);
    return list;
  }
}
