/**
 * The wills of the durable aedes persistence (durable.ts): every session's will in memory, a
 * persistent (clean=false) session's also journaled as `w!<clientId>`, each keeping the id of the
 * broker it was stored under, so a restarted broker publishes the wills of sessions the previous
 * one lost (`stream`). A will is judged by `admitWill` (transport/mqtt/wills.ts) when it is
 * restored and again before it is handed to aedes; a refused one is logged and deleted.
 * `written` turns a failed journal write into ERR_MQTT_JOURNAL_WRITE for every caller here.
 *
 * @example
 * ```ts
 * const wills = new WillStore({ journal, admitWill, logger, brokerId: () => broker.id });
 * await wills.put({ id: 'dev-1', clean: false }, packet);
 * wills.stream({ [liveBroker]: true }); // the wills of brokers that are gone
 * ```
 */
import { Readable } from 'node:stream';
import type { Logger } from '../../../runtime/core/logger.ts';
import { TransportError } from '../../errors.ts';
import type { ClientRef, PersistenceOptions } from './api.ts';
import { encodeValue, packetOf, type StoredPacket } from './codec.ts';
import type { Journal } from './journal.ts';
import type { Will } from './replay.ts';

/** Waits for journal writes; a failed one is ERR_MQTT_JOURNAL_WRITE. */
export async function written(writes: Promise<void>[]): Promise<void> {
  try {
    await Promise.all(writes);
  } catch (err) {
    throw new TransportError(
      'ERR_MQTT_JOURNAL_WRITE',
      `broker journal not written: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

export interface WillStoreOptions {
  readonly journal: Journal;
  readonly admitWill: NonNullable<PersistenceOptions['admitWill']>;
  readonly logger: Logger;
  /** The id of the broker running now (a will is stored under it). */
  readonly brokerId: () => string;
}

export class WillStore {
  readonly #wills = new Map<string, Will>();
  readonly #stored = new Set<string>();
  readonly #journal: Journal;
  readonly #admitWill: WillStoreOptions['admitWill'];
  readonly #logger: Logger;
  readonly #brokerId: () => string;

  constructor(o: WillStoreOptions) {
    this.#journal = o.journal;
    this.#admitWill = o.admitWill;
    this.#logger = o.logger;
    this.#brokerId = o.brokerId;
  }

  /** A will read back from the journal: kept, or (refused) the journal write that deletes it. */
  restore(will: Will): Promise<void> | undefined {
    if (this.#refused(will)) return this.#journal.del(`w!${will.clientId}`);
    this.#wills.set(will.clientId, will);
    this.#stored.add(will.clientId);
    return undefined;
  }

  async put(client: ClientRef, packet: StoredPacket): Promise<void> {
    const will: Will = Object.assign(packet, { brokerId: this.#brokerId(), clientId: client.id });
    this.#wills.set(client.id, will);
    if (client.clean !== false) return;
    this.#stored.add(client.id);
    await written([this.#journal.put(`w!${client.id}`, encodeValue(packetOf(will)))]);
  }

  async get(client: ClientRef): Promise<Will | undefined> {
    return this.#wills.get(client.id);
  }

  async del(client: ClientRef): Promise<Will | undefined> {
    const will = this.#wills.get(client.id);
    this.#wills.delete(client.id);
    if (this.#stored.delete(client.id)) await written([this.#journal.del(`w!${client.id}`)]);
    return will;
  }

  /** Logs and returns true when `will` may not be published (any more). */
  #refused(will: Will): boolean {
    const bad = this.#admitWill(will);
    if (bad === undefined) return false;
    this.#logger.warn('stored will dropped', {
      code: bad.code,
      reason: bad.reason,
      clientId: will.clientId,
      topic: will.topic,
    });
    return true;
  }

  /** The wills of brokers that are gone, each judged again first (a refused one is deleted). */
  stream(brokers: Record<string, unknown> = {}): Readable {
    const out: Will[] = [];
    for (const w of [...this.#wills.values()]) {
      if (brokers[w.brokerId] !== undefined) continue;
      if (this.#refused(w))
        this.del({ id: w.clientId }).catch((err: Error) =>
          this.#logger.error('stored will not deleted', { clientId: w.clientId, reason: err.message }),
        );
      else out.push(w);
    }
    return Readable.from(out);
  }
}
