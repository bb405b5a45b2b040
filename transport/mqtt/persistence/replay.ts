/**
 * Reading the journal back at start: every entry decoded and checked (`codec.ts`) and sorted by
 * kind, in key order; an entry that does not decode is logged with ERR_MQTT_JOURNAL_CORRUPT and
 * listed for deletion. What it holds is then put back into memory by `DurablePersistence.open`.
 *
 * @example
 * ```ts
 * const j = await readJournal(db, logger);
 * j.queued;  // [{ seq, clientId, packet }], oldest first
 * j.nextSeq; // above every sequence in use
 * ```
 */
import type { Logger } from '../../../runtime/core/logger.ts';
import { TransportError } from '../../errors.ts';
import {
  decodeOwner,
  decodePacket,
  decodeSessionPacket,
  decodeSubscriptions,
  journalCorrupt,
  parseSeq,
  type StoredPacket,
  type StoredSubscription,
} from './codec.ts';
import type { JournalDb } from './journal.ts';

/** A persistent session's will, with the broker id it was stored under. */
export type Will = StoredPacket & { brokerId: string; clientId: string };

/** A journaled packet and the sequence of its key. */
export interface SeqRecord {
  readonly seq: number;
  readonly packet: StoredPacket;
}

/** One packet of a session: `q!` (queued outgoing) or `i!` (inbound QoS 2). */
export interface SessionRecord extends SeqRecord {
  readonly clientId: string;
}

export interface JournalContents {
  readonly retained: StoredPacket[];
  readonly subscriptions: [clientId: string, subs: StoredSubscription[]][];
  /** Queued outgoing messages, without the packet id of their old connection. */
  readonly queued: SessionRecord[];
  readonly incoming: (SessionRecord & { readonly messageId: number })[];
  readonly wills: Will[];
  /** The SPIFFE ID that holds each persistent session's client id (`o!`). */
  readonly owners: [clientId: string, spiffeId: string][];
  /** Messages logged ahead of their PUBACK but not yet queued (`p!`). */
  readonly ahead: SeqRecord[];
  /** Keys of the entries that did not decode. */
  readonly corrupt: string[];
  /** Above every sequence in use. */
  readonly nextSeq: number;
}

export async function readJournal(db: JournalDb, logger: Logger): Promise<JournalContents> {
  const j = {
    retained: [] as StoredPacket[],
    subscriptions: [] as [string, StoredSubscription[]][],
    queued: [] as SessionRecord[],
    incoming: [] as (SessionRecord & { messageId: number })[],
    wills: [] as Will[],
    owners: [] as [string, string][],
    ahead: [] as SeqRecord[],
    corrupt: [] as string[],
    nextSeq: 0,
  };
  for await (const [key, value] of db.iterator()) {
    try {
      const seq = read(key, value, j);
      if (seq !== undefined) j.nextSeq = Math.max(j.nextSeq, seq + 1);
    } catch (err) {
      const e = err instanceof TransportError ? err : journalCorrupt(key, String(err), err);
      logger.warn('broker journal entry dropped', { code: e.code, key, reason: e.message });
      j.corrupt.push(key);
    }
  }
  return j;
}

/** Sorts one entry into `j`; returns its sequence when it has one. */
function read(key: string, value: Uint8Array, j: JournalContents): number | undefined {
  const kind = key.slice(0, 2);
  const rest = key.slice(2);
  switch (kind) {
    case 'p!': {
      const seq = parseSeq(key);
      j.ahead.push({ seq, packet: decodePacket(key, value) });
      return seq;
    }
    case 'r!': {
      const packet = decodePacket(key, value);
      if (packet.topic !== rest) throw journalCorrupt(key, 'topic mismatch');
      j.retained.push(packet);
      return undefined;
    }
    case 's!':
      j.subscriptions.push([rest, decodeSubscriptions(key, value)]);
      return undefined;
    case 'q!': {
      const seq = parseSeq(key);
      const { clientId, packet } = decodeSessionPacket(key, value);
      // A new connection numbers its in-flight messages afresh (no collision with new ones).
      if (packet.cmd === 'publish') delete packet.messageId;
      j.queued.push({ seq, clientId, packet });
      return seq;
    }
    case 'i!': {
      const seq = parseSeq(key);
      const { clientId, packet } = decodeSessionPacket(key, value);
      if (packet.messageId === undefined) throw journalCorrupt(key, 'no messageId');
      j.incoming.push({ seq, clientId, packet, messageId: packet.messageId });
      return seq;
    }
    case 'w!': {
      const packet = decodePacket(key, value);
      if (packet.brokerId === undefined) throw journalCorrupt(key, 'no brokerId');
      j.wills.push({ ...packet, brokerId: packet.brokerId, clientId: rest });
      return undefined;
    }
    case 'o!': {
      const owner = decodeOwner(key, value);
      j.owners.push([rest, owner]);
      return undefined;
    }
    default:
      throw journalCorrupt(key, 'unknown kind of entry');
  }
}
