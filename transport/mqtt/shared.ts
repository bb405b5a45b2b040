/**
 * Shared subscriptions (`$share/<group>/<filter>`, MQTT 5 §4.8.2) for MQTT 3.1.1 clients, built on
 * aedes 1.2, which acknowledges them but delivers nothing to them (aedes only stores the literal
 * `$share/…` filter, which matches no topic). Here the broker itself subscribes once per
 * (group, filter) and hands each matching message to ONE member of the group, round robin, at
 * min(message QoS, the member's granted QoS). Several groups on one filter each get a copy;
 * plain subscribers are untouched.
 *
 * - Members join in `authorizeSubscribe` (hooks.ts) once the policy grants the shared filter;
 *   that hook also runs when aedes restores a clean=false session at reconnect, so a persistent
 *   member rejoins its groups without subscribing again (also after a broker restart with the
 *   durable journal, which keeps the literal subscription).
 * - Members leave on UNSUBSCRIBE and when their connection closes. A group without members has
 *   no broker subscription: messages published while no member is connected are dropped (MQTT 5
 *   lets a server queue them for a disconnected persistent member; this broker does not).
 * - A delivery skips members that are closing, whose shared grant a policy reload removed, or that
 *   the forward check refuses (`canReceive`: the session is gone, e.g. revoked); aedes then runs
 *   its own `authorizeForward` on the delivery as on any other, where `forwardable` tells a
 *   shared delivery apart (and stamps it) so that it is checked against the `$share` grants.
 * - Deliveries to a clean=false member are queued in its session first (journaled with the
 *   durable persistence), so a QoS 1/2 message in flight when it disconnects is sent again when
 *   it reconnects, like any message of a persistent session. Queued deliveries carry the broker
 *   id `$share:<aedes id>`, by which `forwardable` recognises them when aedes sends them again.
 * - Retained messages are not sent on a shared SUBSCRIBE (the MQTT 5 rule): aedes looks them up
 *   under the literal `$share/…` filter, which no topic matches.
 *
 * aedes internals used (1.2, see node_modules/aedes/lib/client.js): `client.deliverQoS` and
 * `client.deliver0` (what aedes' own subscriptions call: QoS downgrade, message ids, inflight,
 * `authorizeForward`), `broker.counter` (the packet counter) and `persistence.outgoingEnqueue`.
 * `client.publish` is not used: it stamps the packet with the broker's id and a fresh counter,
 * and aedes' per-client duplicate filter would then drop a later message's plain delivery to a
 * member that also holds a plain subscription. Packets handed over here carry no broker id, so
 * that filter leaves them alone; `forwardable` gives the packet aedes then sends the `$share:` id
 * (aedes keys its session queue on broker id and counter).
 *
 * @example
 * ```ts
 * const shared = new SharedSubscriptions({ logger, canReceive: (c, t) => grantsOf(c)?.canReceiveShared(t) === true });
 * const aedes = new Aedes({ authorizeSubscribe: ..., authorizeForward: ... }); // hooks call join / isDelivery
 * shared.attach(aedes);
 * shared.join(client, '$share/workers/jobs/#', { group: 'workers', filter: 'jobs/#' }, 1, done);
 * ```
 */
import type { Aedes, Client } from 'aedes';
import type { Logger } from '../../runtime/core/logger.ts';
import type { TransportErrorCode } from '../errors.ts';
import type { SharedFilter } from '../policy/share.ts';

/** Prefix of the broker id that shared deliveries carry once aedes numbers or queues them. */
const SHARED_BROKER_ID = '$share:';

/** The message fields a delivery needs (an aedes publish packet). */
interface Message {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: number;
}

interface OutPacket {
  cmd: 'publish';
  brokerId?: string;
  brokerCounter?: number;
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: false;
  dup: false;
}

type Done = () => void;

/** The aedes 1.2 client internals a delivery goes through (not in aedes' type declarations). */
interface ClientInternals {
  readonly id: string;
  readonly clean: boolean;
  readonly closed: boolean;
  readonly conn: { readonly destroyed?: boolean };
  deliver0(packet: OutPacket, cb: Done): void;
  deliverQoS(packet: OutPacket, cb: Done): void;
}

interface BrokerInternals {
  readonly id: string;
  counter: number;
  readonly persistence: {
    outgoingEnqueue(sub: { clientId: string }, packet: OutPacket): Promise<void>;
  };
  subscribe(topic: string, fn: (packet: Message, cb: Done) => void, done: Done): void;
  unsubscribe(topic: string, fn: (packet: Message, cb: Done) => void, done?: Done): void;
  on(event: 'unsubscribe', fn: (topics: string[], client: Client) => void): unknown;
  off(event: 'unsubscribe', fn: (topics: string[], client: Client) => void): unknown;
}

interface Member {
  readonly client: Client;
  qos: 0 | 1 | 2;
  /** False while a policy reload has taken the shared grant away. */
  granted: boolean;
}

interface Group {
  /** The full `$share/<group>/<filter>` filter (the key of the group). */
  readonly topic: string;
  readonly name: string;
  readonly filter: string;
  readonly members: Member[];
  /** Index of the member that gets the next message. */
  next: number;
  /** Joins waiting for the broker subscription to be in place; undefined once it is. */
  waiting: Done[] | undefined;
  readonly route: (packet: Message, cb: Done) => void;
}

export interface SharedStats {
  readonly groups: number;
  readonly members: number;
  /** Messages handed to a member. */
  readonly delivered: number;
  /** Messages that matched a group with no member able to receive them. */
  readonly dropped: number;
}

export interface SharedOptions {
  readonly logger: Logger;
  /** The per-delivery check: may `client` still receive a shared message on `topic`? */
  readonly canReceive: (client: Client, topic: string) => boolean;
}

export class SharedSubscriptions {
  readonly #logger: Logger;
  readonly #canReceive: (client: Client, topic: string) => boolean;
  readonly #groups = new Map<string, Group>();
  /** The groups each member client is in, by shared filter. */
  readonly #byClient = new Map<Client, Map<string, Group>>();
  readonly #deliveries = new WeakSet<object>();
  readonly #onUnsubscribe = (topics: string[], client: Client): void => {
    for (const t of topics) this.leave(client, t);
  };
  #broker: BrokerInternals | undefined;
  #brokerId = SHARED_BROKER_ID;
  #delivered = 0;
  #dropped = 0;

  constructor(options: SharedOptions) {
    this.#logger = options.logger;
    this.#canReceive = options.canReceive;
  }

  /** Start serving `broker` (once, right after it is built). */
  attach(broker: Aedes): void {
    if (this.#broker !== undefined) throw new TypeError('SharedSubscriptions already attached');
    this.#broker = broker as unknown as BrokerInternals;
    this.#brokerId = SHARED_BROKER_ID + broker.id;
    this.#broker.on('unsubscribe', this.#onUnsubscribe);
  }

  /**
   * Add `client` to the group of `topic` (`$share/<group>/<filter>`, already authorized) at `qos`;
   * `done` runs once the group receives messages. Joining again only updates the QoS.
   */
  join(client: Client, topic: string, shared: SharedFilter, qos: number, done: Done): void {
    const broker = this.#broker;
    if (broker === undefined) throw new TypeError('SharedSubscriptions not attached');
    const q = (qos === 2 ? 2 : qos === 1 ? 1 : 0) as 0 | 1 | 2;
    // A client closed while aedes was restoring its session: nothing to join (and no 'close' to come).
    if (client.closed || client.conn.closed) {
      done();
      return;
    }
    let group = this.#groups.get(topic);
    if (group === undefined) {
      const g: Group = {
        topic,
        name: shared.group,
        filter: shared.filter,
        members: [],
        next: 0,
        waiting: [],
        route: (packet, cb) => this.#route(g, packet, cb),
      };
      group = g;
      this.#groups.set(topic, g);
      broker.subscribe(g.filter, g.route, () => {
        const waiting = g.waiting ?? [];
        g.waiting = undefined;
        for (const w of waiting) w();
      });
    }
    let mine = this.#byClient.get(client);
    if (mine === undefined) {
      mine = new Map();
      this.#byClient.set(client, mine);
      client.conn.once('close', () => this.#leaveAll(client));
    }
    const existing = group.members.find((m) => m.client === client);
    if (existing === undefined) group.members.push({ client, qos: q, granted: true });
    else existing.qos = q;
    mine.set(topic, group);
    if (group.waiting === undefined) done();
    else group.waiting.push(done);
  }

  /** Remove `client` from the group of `topic` (no effect when it is not a member). */
  leave(client: Client, topic: string): void {
    const group = this.#byClient.get(client)?.get(topic);
    if (group === undefined) return;
    this.#byClient.get(client)?.delete(topic);
    this.#removeMember(group, client);
  }

  /** After a policy reload: mark each member granted or not (`isGranted(client, sharedFilter)`). */
  regrant(isGranted: (client: Client, topic: string) => boolean): void {
    for (const g of this.#groups.values()) {
      for (const m of g.members) m.granted = isGranted(m.client, g.topic);
    }
  }

  /**
   * For `authorizeForward`: undefined when `packet` is not a shared delivery; otherwise the packet
   * to forward (if the member may receive it): a live delivery stamped with the `$share:` broker
   * id, or a queued one aedes sends again at reconnect as it is.
   */
  forwardable<P extends { readonly brokerId?: string | null }>(packet: P): P | undefined {
    if (this.#deliveries.has(packet)) return { ...packet, brokerId: this.#brokerId };
    return packet.brokerId?.startsWith(SHARED_BROKER_ID) === true ? packet : undefined;
  }

  stats(): SharedStats {
    let members = 0;
    for (const g of this.#groups.values()) members += g.members.length;
    return { groups: this.#groups.size, members, delivered: this.#delivered, dropped: this.#dropped };
  }

  /** Drop every group and its broker subscription. */
  close(): void {
    const broker = this.#broker;
    for (const g of this.#groups.values()) broker?.unsubscribe(g.filter, g.route);
    this.#groups.clear();
    this.#byClient.clear();
    broker?.off('unsubscribe', this.#onUnsubscribe);
  }

  #leaveAll(client: Client): void {
    const mine = this.#byClient.get(client);
    if (mine === undefined) return;
    this.#byClient.delete(client);
    for (const g of mine.values()) this.#removeMember(g, client);
  }

  #removeMember(group: Group, client: Client): void {
    const i = group.members.findIndex((m) => m.client === client);
    if (i === -1) return;
    group.members.splice(i, 1);
    if (i < group.next) group.next--;
    if (group.next >= group.members.length) group.next = 0;
    if (group.members.length === 0 && this.#groups.get(group.topic) === group) {
      this.#groups.delete(group.topic);
      this.#broker?.unsubscribe(group.filter, group.route);
    }
  }

  #route(group: Group, packet: Message, cb: Done): void {
    // [MQTT-4.7.2-1]: a filter starting with a wildcard never matches a `$…` topic.
    const first = group.filter.charCodeAt(0);
    if ((first === 43 || first === 35) && packet.topic.charCodeAt(0) === 36) {
      cb();
      return;
    }
    const members = group.members;
    const n = members.length;
    for (let k = 0; k < n; k++) {
      const i = (group.next + k) % n;
      const m = members[i] as Member;
      const c = m.client;
      if (!m.granted || c.closed || c.conn.destroyed === true || !this.#canReceive(c, packet.topic)) continue;
      group.next = (i + 1) % n;
      this.#send(m, packet, cb);
      return;
    }
    this.#dropped++;
    this.#logger.debug('shared message dropped: no member of the group can receive it', {
      group: group.name,
      filter: group.filter,
      topic: packet.topic,
    });
    cb();
  }

  #send(m: Member, message: Message, cb: Done): void {
    const broker = this.#broker as BrokerInternals;
    const client = m.client as unknown as ClientInternals;
    const qos = Math.min(message.qos, m.qos) as 0 | 1 | 2;
    this.#delivered++;
    const out: OutPacket = {
      cmd: 'publish',
      topic: message.topic,
      payload: message.payload,
      qos,
      retain: false,
      dup: false,
    };
    this.#deliveries.add(out);
    if (qos === 0) {
      client.deliver0(out, cb);
      return;
    }
    if (client.clean) {
      client.deliverQoS(out, cb);
      return;
    }
    // Queued in the persistent session under a fresh (`$share:` broker id, counter); the packet
    // aedes sends (stamped by `forwardable`) has the same pair, so its outgoingUpdate numbers
    // that queued entry and the member's PUBACK clears it.
    out.brokerCounter = ++broker.counter;
    const stored: OutPacket = { ...out, brokerId: this.#brokerId };
    broker.persistence.outgoingEnqueue({ clientId: client.id }, stored).then(
      () => client.deliverQoS(out, cb),
      (err: Error) => {
        this.#logger.warn('shared message not delivered: session queue not written', {
          code: 'ERR_MQTT_JOURNAL_WRITE' satisfies TransportErrorCode,
          clientId: client.id,
          topic: message.topic,
          reason: err.message,
        });
        cb();
      },
    );
  }
}
