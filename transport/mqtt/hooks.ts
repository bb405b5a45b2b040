/**
 * The broker's authorization hooks (STYLE.md rule 10): named functions, each built from the live
 * sessions, each denying by default. A client that has no verified session (which cannot
 * happen on the mTLS listener, but is checked anyway) is refused everything. Every refusal goes
 * through `Refusals` (logged with its typed code and counted); reserved `$edgeward/` topics are
 * decided by `reserved-access.ts` alone.
 *
 * | hook | refuses with |
 * |---|---|
 * | `preConnectRecordingClientId` | — (records the CONNECT's own client id, clean flag and keepalive on the session) |
 * | `authenticateBySvid` | CONNACK 2 (identifier rejected, ERR_MQTT_CLIENT_ID_REJECTED): empty client id with a persistent session [MQTT-3.1.3-8], or a client id other than the device id; CONNACK 5 (not authorized): no verified SVID (ERR_MQTT_NO_SESSION), keepalive outside the configured bounds (ERR_MQTT_KEEPALIVE_REFUSED), or no policy rule for the identity (ERR_MQTT_NO_POLICY_RULE); CONNACK 3 (server unavailable, ERR_MQTT_CONNECTION_CAP): the identity's connection cap is reached |
 * | `authorizePublishByPolicy` | disconnect (MQTT 3.1.1 has no PUBLISH refusal): ERR_MQTT_PUBLISH_DENIED (topic or retain flag not granted), ERR_MQTT_RESERVED_TOPIC (a reserved topic other than the client's own renewal topic) |
 * | `authorizeSubscribeByPolicy` | SUBACK 0x80 for that filter (aedes: callback with a null subscription), ERR_MQTT_SUBSCRIBE_DENIED; for `$share/…` ERR_SHARED_SUBSCRIPTION_MALFORMED or ERR_SHARED_SUBSCRIPTION_DENIED; a granted one joins its group (`shared.ts`) |
 * | `authorizeForwardByPolicy` | the message is not delivered (after a policy reload narrowed the grants); a shared-group delivery is checked against the `$share` grants |
 */
import type {
  ConnectPacket as AedesConnect,
  AedesPublishPacket,
  Client,
  PublishPacket,
  Subscription,
} from 'aedes';
import type { TransportErrorCode } from '../errors.ts';
import { isShared, parseShared } from '../policy/share.ts';
import type { Refusals } from './refusals.ts';
import { reservedPublish, reservedReceive } from './reserved-access.ts';
import type { RetainedGuard } from './retained.ts';
import type { Sessions } from './sessions.ts';
import type { SharedSubscriptions } from './shared.ts';
import {
  type TopicLimits,
  topicNameProblem,
  WILL_OWNER,
  type WillGate,
  willOwner,
  willProblem,
} from './wills.ts';

export type AuthError = Error & { returnCode: number };

export const CONNACK_IDENTIFIER_REJECTED = 2;
export const CONNACK_SERVER_UNAVAILABLE = 3;
export const CONNACK_NOT_AUTHORIZED = 5;

/**
 * Records the CONNECT packet's own client id (aedes replaces an empty one before `authenticate`)
 * and will, and stamps the will with its owner (`wills.ts`).
 */
export function preConnectRecordingClientId(sessions: Sessions) {
  return (client: Client, packet: AedesConnect, done: (err: Error | null, ok: boolean) => void): void => {
    const s = sessions.of(client.conn);
    const will = packet.will;
    if (s !== undefined) {
      s.connect = {
        clientId: packet.clientId,
        clean: packet.clean !== false,
        keepalive: packet.keepalive ?? 0,
        will: will == null ? undefined : { topic: will.topic, retain: will.retain === true },
      };
      if (will != null) (will as unknown as Record<string, unknown>)[WILL_OWNER] = s.svid.spiffeId;
    }
    done(null, true);
  };
}

/** What the publish hook needs to judge wills. */
export interface WillChecks {
  readonly gate: WillGate;
  readonly topics: TopicLimits;
  /** Deletes a stored will that was refused (so a replay does not retry it forever). */
  drop(will: PublishPacket): void;
  /** The retained caps (`retained.ts`). */
  readonly retained: RetainedGuard;
}

export function authenticateBySvid(
  sessions: Sessions,
  refusals: Refusals,
  keepalive: { readonly min: number; readonly max: number },
  topics: TopicLimits,
) {
  return (
    client: Client,
    _username: string | undefined,
    _password: Buffer | undefined,
    done: (err: AuthError | null, ok: boolean | null) => void,
  ): void => {
    const s = sessions.of(client.conn);
    const raw = s?.connect;
    if (s !== undefined) s.connect = undefined; // needed only for this decision
    const refuse = (connack: number, code: TransportErrorCode, reason: string): void => {
      const err = refusals.refuse('CONNECT', code, reason, {
        spiffeId: s?.svid.spiffeId,
        clientId: raw?.clientId,
        connack,
      });
      done(Object.assign(err, { returnCode: connack }), null);
    };
    if (s === undefined || raw === undefined) {
      refuse(CONNACK_NOT_AUTHORIZED, 'ERR_MQTT_NO_SESSION', 'no verified client certificate');
      return;
    }
    // [MQTT-3.1.3-8]: a zero-byte client id requires CleanSession=1.
    if (raw.clientId === '' && !raw.clean) {
      refuse(
        CONNACK_IDENTIFIER_REJECTED,
        'ERR_MQTT_CLIENT_ID_REJECTED',
        'empty client id with a persistent session',
      );
      return;
    }
    if (raw.keepalive < keepalive.min || raw.keepalive > keepalive.max) {
      refuse(
        CONNACK_NOT_AUTHORIZED,
        'ERR_MQTT_KEEPALIVE_REFUSED',
        `keepalive ${raw.keepalive} s outside [${keepalive.min}, ${keepalive.max}]`,
      );
      return;
    }
    const g = s.grants;
    if (g === undefined) {
      refuse(CONNACK_NOT_AUTHORIZED, 'ERR_MQTT_NO_POLICY_RULE', 'no policy rule matches the identity');
      return;
    }
    if (!g.anyClientId && raw.clientId !== g.deviceId) {
      refuse(
        CONNACK_IDENTIFIER_REJECTED,
        'ERR_MQTT_CLIENT_ID_REJECTED',
        `client id must be the device id ${g.deviceId}`,
      );
      return;
    }
    if (raw.will !== undefined) {
      const bad = willProblem(g, raw.will, topics);
      if (bad !== undefined) {
        refuse(CONNACK_NOT_AUTHORIZED, bad.code, bad.reason);
        return;
      }
    }
    const clientId = raw.clientId === '' ? client.id : raw.clientId;
    // Session takeover [MQTT-3.1.4-2] only within one identity: with `clientId: any` another
    // identity could otherwise close a live session, or inherit a persistent one's messages.
    const owner = sessions.ownerOf(clientId);
    if (owner !== undefined && owner !== s.svid.spiffeId) {
      refuse(
        CONNACK_IDENTIFIER_REJECTED,
        'ERR_MQTT_SESSION_TAKEOVER',
        `client id ${clientId} belongs to another identity`,
      );
      return;
    }
    const others = sessions.clientIdsOf(s.svid.spiffeId);
    others.delete(clientId); // a reconnect with the same client id takes the old session over
    if (others.size >= g.maxConnections) {
      refuse(CONNACK_SERVER_UNAVAILABLE, 'ERR_MQTT_CONNECTION_CAP', 'per-identity connection cap reached');
      return;
    }
    sessions.admit(s, clientId, raw.clean);
    done(null, true);
  };
}

/**
 * PUBLISH by a client: its own renewal request passes (and is answered by `renewal.ts` on the
 * broker's `publish` event), any other reserved topic is refused, the rest is up to the policy.
 * The broker's own messages (`Aedes.publish`: bundle, replies) never pass through this hook.
 */
export function authorizePublishByPolicy(sessions: Sessions, refusals: Refusals, wills: WillChecks) {
  return (client: Client | null, packet: PublishPacket, done: (err?: Error | null) => void): void => {
    const topic = packet.topic;
    const retain = packet.retain === true;
    // aedes calls this hook with a will when the owner's connection drops (client = that
    // connection) and when it replays stored wills (client = null, or whichever connection now
    // has that client id): either way the will is judged by its owner's grants, never the client's.
    const owner = willOwner(packet);
    if (owner !== undefined || client === null) {
      const bad =
        wills.gate.check(packet) ??
        (retain && owner !== undefined ? wills.retained.admit(owner, topic, packet.payload) : undefined);
      if (bad === undefined) {
        done(null);
        return;
      }
      if (client === null) wills.drop(packet);
      done(
        refusals.refuse('will', bad.code, bad.reason, {
          owner,
          clientId: (packet as { clientId?: string }).clientId,
          topic,
          retain,
        }),
      );
      return;
    }
    const s = sessions.of(client.conn);
    const g = s?.grants;
    const fields = { spiffeId: s?.svid.spiffeId, clientId: client.id, topic, retain };
    const badTopic = topicNameProblem(topic, wills.topics);
    if (badTopic !== undefined) {
      done(refusals.refuse('PUBLISH', 'ERR_MQTT_TOPIC_INVALID', badTopic, fields));
      return;
    }
    const reserved = reservedPublish(g, topic, retain);
    if (reserved === 'renew') {
      done(null);
      return;
    }
    if (reserved === 'denied') {
      done(refusals.refuse('PUBLISH', 'ERR_MQTT_RESERVED_TOPIC', `reserved topic ${topic}`, fields));
      return;
    }
    if (g?.canPublish(topic, retain)) {
      const full = retain ? wills.retained.admit(g.spiffeId, topic, packet.payload) : undefined;
      done(full === undefined ? null : refusals.refuse('PUBLISH', full.code, full.reason, fields));
      return;
    }
    done(
      refusals.refuse(
        'PUBLISH',
        g === undefined ? 'ERR_MQTT_NO_SESSION' : 'ERR_MQTT_PUBLISH_DENIED',
        `not authorized to publish${retain ? ' retained' : ''} to ${topic}`,
        fields,
      ),
    );
  };
}

export function authorizeSubscribeByPolicy(
  sessions: Sessions,
  refusals: Refusals,
  shared: SharedSubscriptions,
) {
  return (
    client: Client,
    sub: Subscription,
    done: (err: Error | null, sub?: Subscription | null) => void,
  ): void => {
    const g = sessions.of(client.conn)?.grants;
    const t = sub.topic;
    const fields = { spiffeId: g?.spiffeId, clientId: client.id, topic: t };
    if (isShared(t)) {
      const s = parseShared(t);
      const malformed = 'problem' in s;
      if (malformed || g === undefined || !g.canSubscribe(t)) {
        refusals.refuse(
          'SUBSCRIBE',
          malformed ? 'ERR_SHARED_SUBSCRIPTION_MALFORMED' : 'ERR_SHARED_SUBSCRIPTION_DENIED',
          malformed ? s.problem : `shared subscription ${t} not granted`,
          fields,
        );
        done(null, null);
        return;
      }
      shared.join(client, t, s, sub.qos, () => done(null, sub));
      return;
    }
    const ok = g !== undefined && (reservedReceive(g, t) ?? g.canSubscribe(t));
    if (ok) {
      done(null, sub);
      return;
    }
    refusals.refuse('SUBSCRIBE', 'ERR_MQTT_SUBSCRIBE_DENIED', `not authorized to subscribe to ${t}`, fields);
    // aedes 1.2 sends SUBACK 0x80 only for a null subscription; an error would send no SUBACK.
    done(null, null);
  };
}

export function authorizeForwardByPolicy(sessions: Sessions, shared: SharedSubscriptions) {
  return (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null => {
    const g = sessions.of(client.conn)?.grants;
    if (g === undefined) return null;
    const t = packet.topic;
    const sharedDelivery = shared.forwardable(packet);
    if (sharedDelivery !== undefined) return g.canReceiveShared(t) ? sharedDelivery : null;
    const reserved = reservedReceive(g, t);
    if (reserved !== undefined) return reserved ? packet : null;
    return g.canReceive(t) ? packet : null;
  };
}
