/**
 * The shapes the durable aedes persistence (durable.ts) deals in: the client and subscription
 * references aedes passes, the promise API of aedes's in-memory persistence as aedes 1.2 calls it
 * (`Inner`, which durable.ts wraps), the options of `DurablePersistence.open` and its stats.
 *
 * @example
 * ```ts
 * const o: PersistenceOptions = { db: store.sublevel('mqtt', 'view'), limits: { perClient: 1000 } };
 * const { queued, dropped }: PersistenceStats = persistence.stats();
 * ```
 */
import type { Readable } from 'node:stream';
import type { Logger } from '../../../runtime/core/logger.ts';
import type { StoredSubscription } from './codec.ts';
import type { JournalDb } from './journal.ts';
import type { QueueLimits } from './queues.ts';
import type { Will } from './replay.ts';

export type ClientRef = { readonly id: string; readonly clean?: boolean };
export type Sub = { readonly clientId: string };

/** The in-memory aedes persistence's promise API, as aedes 1.2 calls it. */
export interface Inner {
  setup(broker: unknown): Promise<void>;
  storeRetained(packet: unknown): Promise<void>;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
  addSubscriptions(client: ClientRef, subs: unknown[]): Promise<void>;
  removeSubscriptions(client: ClientRef, topics: string[]): Promise<void>;
  subscriptionsByClient(client: ClientRef): Promise<StoredSubscription[]>;
  countOffline(): Promise<{ subsCount: number; clientsCount: number }>;
  subscriptionsByTopic(topic: string): Promise<Sub[]>;
  cleanSubscriptions(client: ClientRef): Promise<void>;
  incomingStorePacket(client: ClientRef, packet: unknown): Promise<void>;
  incomingGetPacket(client: ClientRef, packet: { messageId?: number }): Promise<unknown>;
  incomingDelPacket(client: ClientRef, packet: { messageId?: number }): Promise<void>;
  cleanIncoming(client: ClientRef): Promise<void>;
  getClientList(topic: string): Readable;
  destroy(): Promise<void>;
}

export interface PersistenceOptions {
  /** A sublevel with utf8 keys and `view` values, e.g. `store.sublevel('mqtt', 'view')`. */
  readonly db: JournalDb;
  /**
   * Judges a stored will before it is restored and before it is handed to aedes for publication
   * (`wills.ts`); a refused will is deleted and logged with its code. Omitted: every will passes.
   */
  readonly admitWill?: (will: Will) => { readonly code: string; readonly reason: string } | undefined;
  readonly limits?: Partial<QueueLimits>;
  readonly logger?: Logger;
}

export interface PersistenceStats {
  /** Persistent sessions with stored subscriptions. */
  readonly sessions: number;
  /** Outgoing messages queued or in flight, and their payload bytes. */
  readonly queued: number;
  readonly queuedBytes: number;
  /** Messages dropped by the queue caps since start. */
  readonly dropped: number;
  /** Journal entries dropped at start because they did not decode. */
  readonly corrupt: number;
}
