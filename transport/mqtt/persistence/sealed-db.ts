/**
 * The journal's values sealed like every other value of the agent's store: a `JournalDb` over
 * another one that seals each value on write and opens it on read with a `ValueSealer` (the
 * sealed store's AES-256-GCM under its data key, the key name as authenticated data, so a value
 * moved to another key fails like a flipped bit). A value that does not open is reported as
 * corrupt (the journal drops it with ERR_MQTT_JOURNAL_CORRUPT); a value written before sealing
 * (plain CBOR: its first byte is never the sealed format's 0x01) is read as it is and written
 * back sealed, so nothing stored is lost at the upgrade.
 *
 * @example
 * ```ts
 * const db = new SealedJournalDb(store.sublevel('mqtt', 'view'), store.valueSealer('mqtt/'));
 * const persistence = await DurablePersistence.open({ db });
 * ```
 */
import type { JournalDb, JournalOp } from './journal.ts';

/** Seals and opens one value stored under `name` (the runtime/store sealing, by key name). */
export interface ValueSealer {
  seal(name: string, plaintext: Uint8Array): Uint8Array;
  /** undefined when the value fails authentication or is malformed. */
  open(name: string, sealed: Uint8Array): Uint8Array | undefined;
}

/** The sealed format's first byte (runtime/store/value-crypto.ts); plain CBOR journal values never start with it. */
const SEALED_FORMAT = 0x01;

export class SealedJournalDb implements JournalDb {
  readonly #db: JournalDb;
  readonly #sealer: ValueSealer;

  constructor(db: JournalDb, sealer: ValueSealer) {
    this.#db = db;
    this.#sealer = sealer;
  }

  batch(ops: JournalOp[]): Promise<void> {
    return this.#db.batch(
      ops.map((op) =>
        op.type === 'put' ? { type: 'put', key: op.key, value: this.#sealer.seal(op.key, op.value) } : op,
      ),
    );
  }

  async *iterator(): AsyncIterable<[string, Uint8Array]> {
    const legacy: JournalOp[] = [];
    for await (const [key, value] of this.#db.iterator()) {
      if (value[0] !== SEALED_FORMAT) {
        legacy.push({ type: 'put', key, value });
        yield [key, value];
        continue;
      }
      // A value that fails authentication is read as empty bytes, which never decode: the
      // reader drops (and deletes) it with ERR_MQTT_JOURNAL_CORRUPT.
      yield [key, this.#sealer.open(key, value) ?? new Uint8Array(0)];
    }
    if (legacy.length > 0) await this.batch(legacy);
  }
}
