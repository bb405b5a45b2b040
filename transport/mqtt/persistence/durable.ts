/**
 * A durable aedes persistence: reads from memory, every change a persistent session depends on
 * journaled to a LevelDB sublevel of the agent's store (see `journal.ts`, `codec.ts`), and each
 * mutation's promise settles only after its batch is written. On open the journal is replayed
 * into memory; an entry that does not decode is dropped with ERR_MQTT_JOURNAL_CORRUPT in the log.
 *
 * Durable is only what MQTT promises to keep: subscriptions of clean=false sessions, their
 * outgoing QoS 1/2 messages (queued while offline or in flight), their inbound QoS 2 messages
 * awaiting PUBREL and their wills, plus retained messages. A clean session never touches the
 * journal (aedes stores no subscription for it and so enqueues nothing for it), so the broker's
 * per-message cost for clean sessions is that of the in-memory persistence.
 *
 * Subscriptions (the topic trie), retained messages and inbound QoS 2 packets are kept by the
 * in-memory persistence that ships with aedes; outgoing queues (bounded, see `queues.ts`) are
 * kept here, and wills (which keep the broker id they were stored under, so a restarted broker
 * publishes the wills of sessions the previous one lost) in `will-store.ts`. The shapes of the
 * aedes interface, the options and the stats are in `api.ts`.
 *
 * aedes 1.2 writes a QoS 1 PUBACK before it routes the message (and so before it is queued for a
 * subscriber); `guardPublish` (`guard-publish.ts`) wraps the broker's `authorizePublish` so that
 * a QoS 1/2 message some persistent session (or the retained store) will keep is first logged
 * ahead (`p!`, `logAhead`), and the PUBACK can only follow that write. Queuing it deletes the
 * `p!` record in the same batch; a `p!` record found at start (the process died in between) is
 * routed again on replay (`replay.ts` reads the journal back).
 *
 * The agent opens the journal through `SealedJournalDb` (`sealed-db.ts`): every value, payloads
 * included, is sealed under the store's data key like every other value of the store.
 *
 * @example
 * ```ts
 * const persistence = await DurablePersistence.open({ db: store.sublevel('mqtt'), logger });
 * const broker = new Aedes({ persistence });
 * ```
 */
import { Readable } from 'node:stream';
import memory from 'aedes-persistence';
import { type Logger, nullLogger } from '../../../runtime/core/logger.ts';
import type { ClientRef, Inner, PersistenceOptions, PersistenceStats, Sub } from './api.ts';
import { encodeValue, packetOf, type StoredPacket, type StoredSubscription, seqKey } from './codec.ts';
import { Journal } from './journal.ts';
import { DEFAULT_QUEUE_LIMITS, type QueueEntry, Queues } from './queues.ts';
import { type JournalContents, readJournal, type Will } from './replay.ts';
import { WillStore, written } from './will-store.ts';

export type { PersistenceOptions, PersistenceStats } from './api.ts';

function withoutMessageId(packet: StoredPacket): StoredPacket {
  const p = packetOf(packet);
  delete p.messageId;
  return p;
}

export class DurablePersistence {
  readonly #inner: Inner;
  readonly #journal: Journal;
  readonly #queues: Queues;
  readonly #logger: Logger;
  readonly #storedSubs = new Set<string>();
  /** clientId → messageId → journal sequence of an inbound QoS 2 packet. */
  readonly #incoming = new Map<string, Map<number, number>>();
  readonly #wills: WillStore;
  #broker: { id: string } | undefined;
  /** Persistent sessions' client ids → the SPIFFE ID holding them (journaled as `o!`). */
  readonly #owners = new Map<string, string>();
  /** Retained messages restored from the journal (for the caps of `retained.ts`), until taken. */
  #restoredRetained: StoredPacket[] = [];
  #seq = 0;
  #corrupt = 0;
  /** A logged-ahead message's payload buffer (the one object aedes keeps along) → its `p!` sequence. */
  readonly #ahead = new WeakMap<object, number>();

  private constructor(o: PersistenceOptions) {
    this.#inner = (memory as unknown as () => Inner)();
    this.#journal = new Journal(o.db);
    this.#queues = new Queues({ ...DEFAULT_QUEUE_LIMITS, ...o.limits });
    this.#logger = o.logger ?? nullLogger;
    this.#wills = new WillStore({
      journal: this.#journal,
      admitWill: o.admitWill ?? (() => undefined),
      logger: this.#logger,
      brokerId: () => this.#broker?.id ?? '',
    });
  }

  /** Opens the persistence and replays the journal into memory. */
  static async open(o: PersistenceOptions): Promise<DurablePersistence> {
    const p = new DurablePersistence(o);
    await p.#restore(await readJournal(o.db, p.#logger));
    return p;
  }

  stats(): PersistenceStats {
    return {
      sessions: this.#storedSubs.size,
      queued: this.#queues.size,
      queuedBytes: this.#queues.bytes,
      dropped: this.#queues.dropped,
      corrupt: this.#corrupt,
    };
  }

  /** Who holds each persistent session's client id (restored, then kept up to date by `setOwner`). */
  owners(): ReadonlyMap<string, string> {
    return this.#owners;
  }

  /**
   * Records (or, with undefined, forgets) the identity holding a persistent session's client id,
   * so that a takeover by another identity is refused after a restart too.
   */
  async setOwner(clientId: string, spiffeId: string | undefined): Promise<void> {
    if (this.#owners.get(clientId) === spiffeId) return;
    if (spiffeId === undefined) {
      this.#owners.delete(clientId);
      await written([this.#journal.del(`o!${clientId}`)]);
      return;
    }
    this.#owners.set(clientId, spiffeId);
    await written([this.#journal.put(`o!${clientId}`, encodeValue(spiffeId))]);
  }

  /** The retained messages the journal held at open (once: the list is then released). */
  takeRestoredRetained(): StoredPacket[] {
    const r = this.#restoredRetained;
    this.#restoredRetained = [];
    return r;
  }

  /** Resolves when every journal write asked for so far is written. */
  flushed(): Promise<void> {
    return this.#journal.flushed();
  }

  /** Puts what the journal holds back into memory; routes the messages logged ahead. */
  async #restore(j: JournalContents): Promise<void> {
    this.#seq = j.nextSeq;
    const writes: Promise<void>[] = [];
    for (const packet of j.retained) void this.#inner.storeRetained(packet);
    this.#restoredRetained = [...j.retained];
    for (const [clientId, owner] of j.owners) this.#owners.set(clientId, owner);
    for (const [clientId, subs] of j.subscriptions) {
      void this.#inner.addSubscriptions({ id: clientId, clean: false }, subs);
      this.#storedSubs.add(clientId);
    }
    for (const { seq, clientId, packet } of j.queued)
      writes.push(
        ...this.#push({ seq, clientId, packet, bytes: packet.payload.length + packet.topic.length }),
      );
    for (const { seq, clientId, packet, messageId } of j.incoming) {
      void this.#inner.incomingStorePacket({ id: clientId, clean: false }, packet);
      this.#incomingOf(clientId).set(messageId, seq);
    }
    for (const will of j.wills) {
      const del = this.#wills.restore(will);
      if (del !== undefined) writes.push(del);
    }
    // Logged ahead, acknowledged, but not yet queued when the process stopped: route them now.
    for (const { seq, packet: logged } of j.ahead) {
      // Logged before aedes numbered it: give it an identity outgoingUpdate can match on.
      const packet = { ...logged, brokerId: `journal:${this.#seq}`, brokerCounter: seq + 1 };
      if (packet.retain) await this.#inner.storeRetained(packet);
      if (packet.retain) this.#restoredRetained.push(packet);
      if (packet.retain) writes.push(this.#journal.put(`r!${packet.topic}`, encodeValue(packet)));
      writes.push(...this.#enqueue(await this.#inner.subscriptionsByTopic(packet.topic), packet));
      writes.push(this.#journal.del(seqKey('p!', seq)));
    }
    this.#corrupt = j.corrupt.length;
    await written([...writes, ...j.corrupt.map((k) => this.#journal.del(k))]);
    this.#logger.info('broker sessions restored', { ...this.stats() });
  }

  #incomingOf(clientId: string): Map<number, number> {
    let m = this.#incoming.get(clientId);
    if (m === undefined) {
      m = new Map();
      this.#incoming.set(clientId, m);
    }
    return m;
  }

  /** Queues one entry in memory; the entries the caps push out are forgotten (journal too). */
  #push(entry: QueueEntry): Promise<void>[] {
    const dropped = this.#queues.push(entry);
    if (dropped.length === 0) return [];
    const n = this.#queues.dropped;
    if (Number.isInteger(Math.log10(n)) || n - dropped.length < 1)
      this.#logger.warn('broker queue full: oldest messages dropped', {
        clientId: entry.clientId,
        dropped: n,
        queued: this.#queues.size,
        queuedBytes: this.#queues.bytes,
      });
    return dropped.map((d) => this.#journal.del(seqKey('q!', d.seq)));
  }

  // ---- the aedes persistence interface (aedes 1.2 calls the promise forms) ----

  async setup(broker: { id: string }): Promise<void> {
    this.#broker = broker;
    await this.#inner.setup(broker);
  }

  async storeRetained(packet: StoredPacket): Promise<void> {
    await this.#inner.storeRetained(packet);
    const key = `r!${packet.topic}`;
    await written([
      packet.payload.length === 0
        ? this.#journal.del(key)
        : this.#journal.put(key, encodeValue(withoutMessageId(packet))),
    ]);
  }

  createRetainedStream(pattern: string): Readable {
    return this.#inner.createRetainedStream(pattern);
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    return this.#inner.createRetainedStreamCombi(patterns);
  }

  async addSubscriptions(client: ClientRef, subs: StoredSubscription[]): Promise<void> {
    await this.#inner.addSubscriptions(client, subs);
    await this.#saveSubs(client);
  }

  async removeSubscriptions(client: ClientRef, topics: string[]): Promise<void> {
    await this.#inner.removeSubscriptions(client, topics);
    await this.#saveSubs(client);
  }

  async #saveSubs(client: ClientRef): Promise<void> {
    const subs = await this.#inner.subscriptionsByClient(client);
    const key = `s!${client.id}`;
    if (subs.length === 0) {
      if (!this.#storedSubs.delete(client.id)) return;
      await written([this.#journal.del(key)]);
      return;
    }
    this.#storedSubs.add(client.id);
    const list = subs.map(({ topic, qos, rh, rap, nl }) => ({ topic, qos, rh, rap, nl }));
    await written([this.#journal.put(key, encodeValue(list))]);
  }

  subscriptionsByClient(client: ClientRef): Promise<StoredSubscription[]> {
    return this.#inner.subscriptionsByClient(client);
  }

  countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return this.#inner.countOffline();
  }

  subscriptionsByTopic(topic: string): Promise<Sub[]> {
    return this.#inner.subscriptionsByTopic(topic);
  }

  /** A clean connect ends the previous session: its subscriptions and queue go. */
  async cleanSubscriptions(client: ClientRef): Promise<void> {
    await this.#inner.cleanSubscriptions(client);
    const writes: Promise<void>[] = [];
    if (this.#storedSubs.delete(client.id)) writes.push(this.#journal.del(`s!${client.id}`));
    for (const e of this.#queues.clear(client.id)) writes.push(this.#journal.del(seqKey('q!', e.seq)));
    if (writes.length > 0) await written(writes);
  }

  async outgoingEnqueue(sub: Sub, packet: StoredPacket): Promise<void> {
    await this.outgoingEnqueueCombi([sub], packet);
  }

  async outgoingEnqueueCombi(subs: readonly Sub[], packet: StoredPacket): Promise<void> {
    const ahead = this.#ahead.get(packet.payload);
    if (subs.length === 0 && ahead === undefined) return;
    const writes = this.#enqueue(subs, packet);
    if (ahead !== undefined) {
      this.#ahead.delete(packet.payload);
      writes.push(this.#journal.del(seqKey('p!', ahead)));
    }
    await written(writes);
  }

  /**
   * Logs an authorized message ahead of its PUBACK when a persistent session or the retained
   * store may keep it (`guard-publish.ts`); undefined, at no cost, when nothing could: QoS 0, or
   * no persistent session and not retained.
   */
  logAhead(packet: StoredPacket): Promise<void> | undefined {
    if (packet.qos === 0 || (this.#storedSubs.size === 0 && !packet.retain)) return undefined;
    return this.#logAhead(packet);
  }

  async #logAhead(packet: StoredPacket): Promise<void> {
    if (!packet.retain && (await this.#inner.subscriptionsByTopic(packet.topic)).length === 0) return;
    const seq = this.#seq++;
    this.#ahead.set(packet.payload, seq);
    await written([this.#journal.put(seqKey('p!', seq), encodeValue(withoutMessageId(packet)))]);
  }

  /** Queues `packet` for each subscription in memory; returns the journal writes. */
  #enqueue(subs: readonly Sub[], packet: StoredPacket): Promise<void>[] {
    const writes: Promise<void>[] = [];
    for (const sub of subs) {
      const stored = withoutMessageId(packet);
      const seq = this.#seq++;
      const entry = {
        seq,
        clientId: sub.clientId,
        packet: stored,
        bytes: stored.payload.length + stored.topic.length,
      };
      writes.push(
        this.#journal.put(seqKey('q!', seq), encodeValue({ clientId: sub.clientId, packet: stored })),
      );
      writes.push(...this.#push(entry));
    }
    return writes;
  }

  /**
   * Records the packet id a queued message was sent with (memory only: after a restart the new
   * connection numbers it afresh), or replaces a delivered QoS 2 message by its PUBREL (journaled).
   * A message the caps dropped meanwhile is not an error: it is delivered untracked.
   */
  async outgoingUpdate(client: ClientRef, packet: StoredPacket): Promise<void> {
    for (const e of this.#queues.of(client.id)) {
      if (e.packet.brokerId === packet.brokerId) {
        if (e.packet.brokerCounter === packet.brokerCounter) {
          if (packet.messageId !== undefined) e.packet.messageId = packet.messageId;
          return;
        }
      } else if (e.packet.messageId === packet.messageId) {
        e.packet = packetOf(packet);
        await written([
          this.#journal.put(seqKey('q!', e.seq), encodeValue({ clientId: client.id, packet: e.packet })),
        ]);
        return;
      }
    }
  }

  async outgoingClearMessageId(
    client: ClientRef,
    packet: { messageId?: number },
  ): Promise<StoredPacket | undefined> {
    const list = this.#queues.of(client.id);
    const e = list.find((x) => x.packet.messageId === packet.messageId);
    if (e === undefined) return undefined;
    this.#queues.remove(e);
    await written([this.#journal.del(seqKey('q!', e.seq))]);
    return e.packet;
  }

  outgoingStream(client: ClientRef): Readable {
    return Readable.from(this.#queues.of(client.id).map((e) => e.packet));
  }

  async incomingStorePacket(client: ClientRef, packet: StoredPacket): Promise<void> {
    await this.#inner.incomingStorePacket(client, packet);
    if (client.clean !== false || packet.messageId === undefined) return;
    const seq = this.#seq++;
    const byId = this.#incomingOf(client.id);
    const old = byId.get(packet.messageId);
    byId.set(packet.messageId, seq);
    const writes = [
      this.#journal.put(seqKey('i!', seq), encodeValue({ clientId: client.id, packet: packetOf(packet) })),
    ];
    if (old !== undefined) writes.push(this.#journal.del(seqKey('i!', old)));
    await written(writes);
  }

  incomingGetPacket(client: ClientRef, packet: { messageId?: number }): Promise<unknown> {
    return this.#inner.incomingGetPacket(client, packet);
  }

  async incomingDelPacket(client: ClientRef, packet: { messageId?: number }): Promise<void> {
    await this.#inner.incomingDelPacket(client, packet);
    const byId = this.#incoming.get(client.id);
    const seq = packet.messageId === undefined ? undefined : byId?.get(packet.messageId);
    if (seq === undefined || byId === undefined) return;
    byId.delete(packet.messageId as number);
    if (byId.size === 0) this.#incoming.delete(client.id);
    await written([this.#journal.del(seqKey('i!', seq))]);
  }

  async cleanIncoming(client: ClientRef): Promise<void> {
    await this.#inner.cleanIncoming(client);
    const byId = this.#incoming.get(client.id);
    if (byId === undefined) return;
    this.#incoming.delete(client.id);
    await written([...byId.values()].map((seq) => this.#journal.del(seqKey('i!', seq))));
  }

  putWill(client: ClientRef, packet: StoredPacket): Promise<void> {
    return this.#wills.put(client, packet);
  }

  async getWill(client: ClientRef): Promise<Will | undefined> {
    return this.#wills.get(client);
  }

  delWill(client: ClientRef): Promise<Will | undefined> {
    return this.#wills.del(client);
  }

  /** The wills of brokers that are gone, each judged again first (a refused one is deleted). */
  streamWill(brokers: Record<string, unknown> = {}): Readable {
    return this.#wills.stream(brokers);
  }

  getClientList(topic: string): Readable {
    return this.#inner.getClientList(topic);
  }

  async destroy(): Promise<void> {
    await this.#journal.flushed();
  }
}
