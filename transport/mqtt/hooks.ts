/**
 * The broker's authorization hooks (STYLE.md rule 10): named functions, each built from the live
 * sessions, each denying by default. A client that has no verified session (which cannot
 * happen on the mTLS listener, but is checked anyway) is refused everything.
 *
 * | hook | refuses with |
 * |---|---|
 * | `preConnectRecordingClientId` | — (records the raw client id for `authenticate`) |
 * | `authenticateBySvid` | CONNACK 2 (identifier rejected): empty client id with a persistent session [MQTT-3.1.3-8], or a client id other than the device id; CONNACK 5 (not authorized): no verified SVID, keepalive outside the configured bounds, or no policy rule for the identity; CONNACK 3 (server unavailable): the identity's connection cap is reached |
 * | `authorizePublishByPolicy` | disconnect (MQTT 3.1.1 has no PUBLISH refusal): topic or retain flag not granted, or a reserved topic other than the client's own renewal topic |
 * | `authorizeSubscribeByPolicy` | SUBACK 0x80 for that filter (aedes: callback with a null subscription); for `$share/…` logged with ERR_SHARED_SUBSCRIPTION_MALFORMED or ERR_SHARED_SUBSCRIPTION_DENIED; a granted one joins its group (`shared.ts`) |
 * | `authorizeForwardByPolicy` | the message is not delivered (after a policy reload narrowed the grants); a shared-group delivery is checked against the `$share` grants |
 */
import type {
  ConnectPacket as AedesConnect,
  AedesPublishPacket,
  Client,
  PublishPacket,
  Subscription,
} from 'aedes';
import type { Logger } from '../../runtime/core/logger.ts';
import type { TransportErrorCode } from '../errors.ts';
import { isShared, parseShared } from '../policy/share.ts';
import { BUNDLE_TOPIC, RENEW_PREFIX, REPLY_PREFIX } from './reserved.ts';
import type { Sessions } from './sessions.ts';
import type { SharedSubscriptions } from './shared.ts';

type ConnectPacket = { clientId: string; clean: boolean; keepalive: number };
export type AuthError = Error & { returnCode: number };

export const CONNACK_IDENTIFIER_REJECTED = 2;
export const CONNACK_SERVER_UNAVAILABLE = 3;
export const CONNACK_NOT_AUTHORIZED = 5;

function authError(returnCode: number, message: string): AuthError {
  return Object.assign(new Error(message), { returnCode });
}

const rawIds = new WeakMap<object, ConnectPacket>();

/** Records the CONNECT packet's own client id (aedes replaces an empty one before `authenticate`). */
export function preConnectRecordingClientId() {
  return (client: Client, packet: AedesConnect, done: (err: Error | null, ok: boolean) => void): void => {
    rawIds.set(client, {
      clientId: packet.clientId,
      clean: packet.clean !== false,
      keepalive: packet.keepalive ?? 0,
    });
    done(null, true);
  };
}

export function authenticateBySvid(
  sessions: Sessions,
  logger: Logger,
  keepalive: { readonly min: number; readonly max: number },
) {
  return (
    client: Client,
    _username: string | undefined,
    _password: Buffer | undefined,
    done: (err: AuthError | null, ok: boolean | null) => void,
  ): void => {
    const s = sessions.of(client.conn);
    const raw = rawIds.get(client);
    rawIds.delete(client); // needed only for this decision
    const refuse = (code: number, reason: string): void => {
      logger.warn('CONNECT refused', {
        reason,
        spiffeId: s?.svid.spiffeId,
        clientId: raw?.clientId,
        connack: code,
      });
      done(authError(code, reason), null);
    };
    if (s === undefined || raw === undefined) {
      refuse(CONNACK_NOT_AUTHORIZED, 'no verified client certificate');
      return;
    }
    // [MQTT-3.1.3-8]: a zero-byte client id requires CleanSession=1.
    if (raw.clientId === '' && !raw.clean) {
      refuse(CONNACK_IDENTIFIER_REJECTED, 'empty client id with a persistent session');
      return;
    }
    if (raw.keepalive < keepalive.min || raw.keepalive > keepalive.max) {
      refuse(
        CONNACK_NOT_AUTHORIZED,
        `keepalive ${raw.keepalive} s outside [${keepalive.min}, ${keepalive.max}]`,
      );
      return;
    }
    const g = s.grants;
    if (g === undefined) {
      refuse(CONNACK_NOT_AUTHORIZED, 'no policy rule matches the identity');
      return;
    }
    if (!g.anyClientId && raw.clientId !== g.deviceId) {
      refuse(CONNACK_IDENTIFIER_REJECTED, `client id must be the device id ${g.deviceId}`);
      return;
    }
    const clientId = raw.clientId === '' ? client.id : raw.clientId;
    const others = sessions.clientIdsOf(s.svid.spiffeId);
    others.delete(clientId); // a reconnect with the same client id takes the old session over
    if (others.size >= g.maxConnections) {
      refuse(CONNACK_SERVER_UNAVAILABLE, 'per-identity connection cap reached');
      return;
    }
    s.clientId = clientId;
    done(null, true);
  };
}

/** Called with the request of a device on its own renewal topic. */
export type RenewHandler = (deviceId: string, packet: PublishPacket, client: Client) => void;

export function authorizePublishByPolicy(sessions: Sessions, logger: Logger, onRenew: RenewHandler) {
  return (client: Client | null, packet: PublishPacket, done: (err?: Error | null) => void): void => {
    if (client === null) {
      done(null);
      return;
    } // the broker's own messages (replies, bundle, wills are checked below)
    const s = sessions.of(client.conn);
    const g = s?.grants;
    const topic = packet.topic;
    if (
      g !== undefined &&
      g.deviceId !== undefined &&
      topic === RENEW_PREFIX + g.deviceId &&
      !packet.retain
    ) {
      onRenew(g.deviceId, packet, client);
      done(null);
      return;
    }
    if (g?.canPublish(topic, packet.retain === true)) {
      done(null);
      return;
    }
    logger.warn('PUBLISH refused', {
      spiffeId: s?.svid.spiffeId,
      clientId: client.id,
      topic,
      retain: packet.retain,
    });
    done(new Error(`not authorized to publish to ${topic}`));
  };
}

export function authorizeSubscribeByPolicy(sessions: Sessions, logger: Logger, shared: SharedSubscriptions) {
  return (
    client: Client,
    sub: Subscription,
    done: (err: Error | null, sub?: Subscription | null) => void,
  ): void => {
    const g = sessions.of(client.conn)?.grants;
    const t = sub.topic;
    if (isShared(t)) {
      const s = parseShared(t);
      const malformed = 'problem' in s;
      if (malformed || g === undefined || !g.canSubscribe(t)) {
        logger.warn('SUBSCRIBE refused', {
          code: (malformed
            ? 'ERR_SHARED_SUBSCRIPTION_MALFORMED'
            : 'ERR_SHARED_SUBSCRIPTION_DENIED') satisfies TransportErrorCode,
          spiffeId: g?.spiffeId,
          clientId: client.id,
          topic: t,
          ...(malformed ? { reason: s.problem } : {}),
        });
        done(null, null);
        return;
      }
      shared.join(client, t, s, sub.qos, () => done(null, sub));
      return;
    }
    const ok =
      g !== undefined &&
      (t === BUNDLE_TOPIC ||
        (g.deviceId !== undefined && t === REPLY_PREFIX + g.deviceId) ||
        g.canSubscribe(t));
    if (ok) {
      done(null, sub);
      return;
    }
    logger.warn('SUBSCRIBE refused', { spiffeId: g?.spiffeId, clientId: client.id, topic: t });
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
    if (t.charCodeAt(0) === 36 /* $ */ && t.startsWith('$edgeward/')) {
      return t === BUNDLE_TOPIC || (g.deviceId !== undefined && t === REPLY_PREFIX + g.deviceId)
        ? packet
        : null;
    }
    return g.canReceive(t) ? packet : null;
  };
}
