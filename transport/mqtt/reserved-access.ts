/**
 * Who may touch the reserved `$edgeward/` topics (`reserved.ts`), in one place: the hooks ask
 * here first and fall back to the policy only for topics outside the reserved prefix (the policy
 * can never grant a reserved topic, see `policy/grants.ts`).
 *
 * | topic | publish | subscribe / receive |
 * |---|---|---|
 * | `$edgeward/renew/<id>` | device `<id>` only, not retained | nobody |
 * | `$edgeward/reply/<id>` | the gateway only | device `<id>` only |
 * | `$edgeward/bundle` | the gateway only | every authenticated client |
 * | anything else under `$edgeward/` | the gateway only | nobody |
 *
 * "The gateway" is the broker's own code (`Aedes.publish` without a client); no client and no
 * will (`wills.ts`) can ever write a reserved topic.
 *
 * @example
 * ```ts
 * reservedPublish(grants, '$edgeward/renew/s1', false); // 'renew' for device s1, 'denied' for others
 * reservedPublish(grants, 'devices/s1/t', false);       // undefined: not reserved, ask the policy
 * ```
 */
import { RESERVED_PREFIX } from '../policy/grants.ts';
import { BUNDLE_TOPIC, RENEW_PREFIX, REPLY_PREFIX } from './reserved.ts';

/** What reserved-topic access needs of a client's grants. */
export interface ReservedCaller {
  readonly deviceId: string | undefined;
}

export function isReserved(topic: string): boolean {
  return topic.charCodeAt(0) === 36 /* $ */ && topic.startsWith(RESERVED_PREFIX);
}

/**
 * A client's PUBLISH on `topic`: `'renew'` when it is the caller's own renewal request, `'denied'`
 * for any other reserved topic, undefined when the topic is not reserved.
 */
export function reservedPublish(
  caller: ReservedCaller | undefined,
  topic: string,
  retain: boolean,
): 'renew' | 'denied' | undefined {
  if (!isReserved(topic)) return undefined;
  return caller?.deviceId !== undefined && !retain && topic === RENEW_PREFIX + caller.deviceId
    ? 'renew'
    : 'denied';
}

/** A client's SUBSCRIBE to (or delivery on) a reserved topic: true, false, or undefined when not reserved. */
export function reservedReceive(caller: ReservedCaller | undefined, topic: string): boolean | undefined {
  if (!isReserved(topic)) return undefined;
  return (
    caller !== undefined &&
    (topic === BUNDLE_TOPIC || (caller.deviceId !== undefined && topic === REPLY_PREFIX + caller.deviceId))
  );
}

/** The device whose renewal request this is, when `topic` is a renewal topic. */
export function renewalDevice(topic: string): string | undefined {
  return topic.startsWith(RENEW_PREFIX) ? topic.slice(RENEW_PREFIX.length) : undefined;
}
