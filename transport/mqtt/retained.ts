/**
 * Retained messages: bounded, and sent on SUBSCRIBE as MQTT 3.1.1 says (fixes around aedes 1.2).
 *
 * - Caps (issue 15 item 5): at most `maxRetainedPerIdentity` messages and
 *   `maxRetainedBytesPerIdentity` bytes (topic + payload) retained by one SPIFFE ID, and
 *   `maxRetained` / `maxRetainedBytes` in all. The publish hook asks `admit` before a retained
 *   PUBLISH (or retained will) is accepted; past a cap it is refused with ERR_MQTT_RETAINED_CAP
 *   (counted, logged with the reason). Each retained message keeps its owner (journaled with it),
 *   so after a restart the restored store is counted again, and what exceeds the caps is dropped.
 *   The gateway's own retained messages (`$edgeward/bundle`) count in the totals only.
 * - [MQTT-4.7.2-1]: a filter starting with a wildcard does not match a topic starting with `$`;
 *   aedes applies it to live messages only, so retained `$…` messages are filtered here.
 * - [MQTT-3.8.4-6]: a retained message is sent at most at the QoS granted to the subscription
 *   that matched it; aedes looks the subscription up by the message's topic, which only finds
 *   exact subscriptions, so wildcard ones got the message's own QoS. Downgraded here.
 *
 * Both fixes wrap the persistence's `createRetainedStreamCombi`, which aedes calls right after
 * it emits `subscribe` with the granted QoS of each filter (same turn of the event loop).
 *
 * @example
 * ```ts
 * const retained = new RetainedGuard(limits, logger);
 * retained.attach(broker, persistence); // before broker.listen()
 * retained.admit(spiffeId, topic, payload); // undefined, or a Problem
 * ```
 */
import { type Readable, Transform } from 'node:stream';
import type { Logger } from '../../runtime/core/logger.ts';
import { matches, splitFilter } from '../policy/topic.ts';
import type { Problem } from './wills.ts';

export interface RetainedLimits {
  readonly maxRetainedPerIdentity: number;
  readonly maxRetainedBytesPerIdentity: number;
  readonly maxRetained: number;
  readonly maxRetainedBytes: number;
}

export interface RetainedStats {
  readonly count: number;
  readonly bytes: number;
  /** Retained messages dropped at start because the restored store exceeded a cap. */
  readonly droppedAtStart: number;
}

type RetainedPacket = {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  edgewardOwner?: string;
};

/** The persistence methods wrapped (aedes-persistence and `DurablePersistence` both have them). */
export interface RetainedStore {
  storeRetained(packet: RetainedPacket): Promise<void>;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

interface Usage {
  count: number;
  bytes: number;
}

const sizeOf = (topic: string, payload: Buffer): number => Buffer.byteLength(topic) + payload.length;

export class RetainedGuard {
  readonly #limits: RetainedLimits;
  readonly #logger: Logger;
  readonly #byTopic = new Map<string, { owner: string | undefined; bytes: number }>();
  readonly #byOwner = new Map<string, Usage>();
  readonly #total: Usage = { count: 0, bytes: 0 };
  /** Payload buffer of an admitted PUBLISH → its owner (aedes copies the packet, not the payload). */
  readonly #owners = new WeakMap<object, string>();
  #granted: Map<string, number> | undefined;
  #droppedAtStart = 0;

  constructor(limits: RetainedLimits, logger: Logger) {
    this.#limits = limits;
    this.#logger = logger;
  }

  stats(): RetainedStats {
    return { ...this.#total, droppedAtStart: this.#droppedAtStart };
  }

  /** Whether `owner` may retain `payload` on `topic` now; an admitted payload is remembered as its. */
  admit(owner: string, topic: string, payload: Buffer | string): Problem | undefined {
    const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
    if (body.length === 0) return undefined; // clears the topic
    const size = sizeOf(topic, body);
    const old = this.#byTopic.get(topic);
    const mine = this.#byOwner.get(owner) ?? { count: 0, bytes: 0 };
    const same = old?.owner === owner;
    const l = this.#limits;
    const ownCount = mine.count + (same ? 0 : 1);
    const ownBytes = mine.bytes - (same ? (old?.bytes ?? 0) : 0) + size;
    const allCount = this.#total.count + (old === undefined ? 1 : 0);
    const allBytes = this.#total.bytes - (old?.bytes ?? 0) + size;
    const over =
      ownCount > l.maxRetainedPerIdentity
        ? `identity holds ${mine.count} retained messages (cap ${l.maxRetainedPerIdentity})`
        : ownBytes > l.maxRetainedBytesPerIdentity
          ? `identity would hold ${ownBytes} retained bytes (cap ${l.maxRetainedBytesPerIdentity})`
          : allCount > l.maxRetained
            ? `broker holds ${this.#total.count} retained messages (cap ${l.maxRetained})`
            : allBytes > l.maxRetainedBytes
              ? `broker would hold ${allBytes} retained bytes (cap ${l.maxRetainedBytes})`
              : undefined;
    if (over !== undefined) return { code: 'ERR_MQTT_RETAINED_CAP', reason: over };
    if (typeof payload !== 'string') this.#owners.set(payload, owner);
    return undefined;
  }

  /** Wraps `store` (before `broker.listen()`); counts what it already holds (restored from a journal). */
  async attach(
    broker: { on(event: 'subscribe', f: (subs: { topic: string; qos: number }[]) => void): unknown },
    store: RetainedStore,
    restored: readonly RetainedPacket[] = [],
  ): Promise<void> {
    const storeRetained = store.storeRetained.bind(store);
    const stream = store.createRetainedStreamCombi.bind(store);
    for (const p of restored) {
      const owner = p.edgewardOwner;
      if (owner !== undefined && this.admit(owner, p.topic, p.payload) !== undefined) {
        this.#droppedAtStart++;
        this.#logger.warn('retained message dropped: over the caps', {
          code: 'ERR_MQTT_RETAINED_CAP',
          owner,
          topic: p.topic,
        });
        await storeRetained({ ...p, payload: Buffer.alloc(0) });
        continue;
      }
      this.#count(p.topic, owner, p.payload);
    }
    store.storeRetained = (packet) => {
      const owner = this.#owners.get(packet.payload);
      if (owner !== undefined) packet.edgewardOwner = owner;
      this.#count(packet.topic, owner, packet.payload);
      return storeRetained(packet);
    };
    broker.on('subscribe', (subs) => {
      this.#granted = new Map(subs.map((s) => [s.topic, s.qos]));
    });
    store.createRetainedStreamCombi = (patterns) => {
      const granted = this.#granted;
      this.#granted = undefined;
      const filters = patterns.map((p) => ({ f: splitFilter(p), qos: granted?.get(p) }));
      return stream(patterns).pipe(
        new Transform({
          objectMode: true,
          transform(packet: RetainedPacket, _enc, cb) {
            let best = -1;
            for (const { f, qos } of filters)
              if (matches(f, packet.topic)) best = Math.max(best, qos ?? packet.qos); // [MQTT-4.7.2-1]
            if (best < 0) cb();
            else cb(null, best < packet.qos ? { ...packet, qos: best } : packet); // [MQTT-3.8.4-6]
          },
        }),
      );
    };
  }

  #count(topic: string, owner: string | undefined, payload: Buffer): void {
    const old = this.#byTopic.get(topic);
    if (old !== undefined) {
      this.#byTopic.delete(topic);
      this.#total.count--;
      this.#total.bytes -= old.bytes;
      const u = old.owner === undefined ? undefined : this.#byOwner.get(old.owner);
      if (u !== undefined && old.owner !== undefined) {
        u.count--;
        u.bytes -= old.bytes;
        if (u.count === 0) this.#byOwner.delete(old.owner);
      }
    }
    if (payload.length === 0) return;
    const bytes = sizeOf(topic, payload);
    this.#byTopic.set(topic, { owner, bytes });
    this.#total.count++;
    this.#total.bytes += bytes;
    if (owner === undefined) return;
    const u = this.#byOwner.get(owner) ?? { count: 0, bytes: 0 };
    u.count++;
    u.bytes += bytes;
    this.#byOwner.set(owner, u);
  }
}
