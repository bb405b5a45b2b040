/**
 * Wills, checked against their owner's grants wherever they are published. A will is set at
 * CONNECT by a verified session: `preConnect` stamps it with its owner (the session's SPIFFE ID,
 * field `edgewardOwner`, journaled with it), and `authenticate` refuses the CONNECT (CONNACK 5)
 * when the owner may not publish it. When it is published (the owner's connection dropped, or
 * replayed by aedes from the journal after a crash, with no client at all) the publish hook
 * checks it again against the owner's grants *now* (`WillGate.check`): the policy may have
 * changed, the owner may be revoked. A will without an owner is never published; a refused
 * stored will is deleted. Reserved `$edgeward/` topics are never a will's.
 *
 * @example
 * ```ts
 * const gate = new WillGate({ policy, self: () => front.self, revocation, topics: limits });
 * gate.check(will); // undefined, or { code: 'ERR_MQTT_WILL_DENIED', reason }
 * ```
 */

import type { Logger } from '../../runtime/core/logger.ts';
import type { RevocationSource } from '../../runtime/sources/types.ts';
import type { TransportErrorCode } from '../errors.ts';
import type { Grants } from '../policy/grants.ts';
import { topicProblem } from '../policy/topic.ts';
import type { PolicyHolder } from './policy-holder.ts';
import { isReserved } from './reserved-access.ts';

export const WILL_OWNER = 'edgewardOwner';

export interface TopicLimits {
  readonly maxTopicLevels: number;
  readonly maxTopicBytes: number;
}

export interface Problem {
  readonly code: TransportErrorCode;
  readonly reason: string;
}

/** The owner stamped on a will, if `packet` is one. */
export function willOwner(packet: object): string | undefined {
  const o = (packet as { [WILL_OWNER]?: unknown })[WILL_OWNER];
  return typeof o === 'string' ? o : undefined;
}

/** Why `topic` is not a topic name this broker accepts (MQTT 3.1.1 §4.7 and the configured limits). */
export function topicNameProblem(topic: string, limits: TopicLimits): string | undefined {
  const p = topicProblem(topic);
  if (p !== undefined) return p;
  if (Buffer.byteLength(topic) > limits.maxTopicBytes)
    return `topic longer than ${limits.maxTopicBytes} bytes`;
  let levels = 1;
  for (let i = topic.indexOf('/'); i !== -1; i = topic.indexOf('/', i + 1))
    if (++levels > limits.maxTopicLevels) return `topic has more than ${limits.maxTopicLevels} levels`;
  if (/\p{Cs}/u.test(topic)) return 'topic is not well-formed UTF-8';
  return undefined;
}

/** Whether `grants` (the owner's) admit a will on `topic`; undefined when they do. */
export function willProblem(
  grants: Grants | undefined,
  will: { readonly topic: string; readonly retain?: boolean },
  limits: TopicLimits,
): Problem | undefined {
  const bad = topicNameProblem(will.topic, limits);
  if (bad !== undefined) return { code: 'ERR_MQTT_TOPIC_INVALID', reason: `will topic: ${bad}` };
  if (isReserved(will.topic))
    return { code: 'ERR_MQTT_RESERVED_TOPIC', reason: `will on reserved topic ${will.topic}` };
  if (grants === undefined) return { code: 'ERR_MQTT_WILL_DENIED', reason: 'will owner has no policy rule' };
  if (!grants.canPublish(will.topic, will.retain === true))
    return {
      code: 'ERR_MQTT_WILL_DENIED',
      reason: `will owner may not publish${will.retain === true ? ' retained' : ''} to ${will.topic}`,
    };
  return undefined;
}

/** What `willDropper` needs of the persistence (aedes-persistence and `DurablePersistence` have it). */
export interface StoresWills {
  delWill(client: { id: string; brokerId: string }): Promise<unknown>;
}

/** Deletes a stored will (refused, or its owner revoked); a failure is logged, never thrown. */
export function willDropper(
  store: StoresWills,
  brokerId: () => string,
  logger: Logger,
): (will: { clientId?: string; brokerId?: string }) => void {
  return (will) => {
    if (will.clientId === undefined) return;
    store
      .delWill({ id: will.clientId, brokerId: will.brokerId ?? brokerId() })
      .catch((err: Error) =>
        logger.error('will not deleted', { clientId: will.clientId, reason: err.message }),
      );
  };
}

export interface WillGateOptions {
  readonly policy: PolicyHolder;
  /** The gateway's SPIFFE ID (`{self}` in policy patterns). */
  readonly self: () => string;
  readonly revocation: RevocationSource;
  readonly topics: TopicLimits;
}

export class WillGate {
  readonly #o: WillGateOptions;

  constructor(o: WillGateOptions) {
    this.#o = o;
  }

  /** Whether the will may be published now, by its owner's grants; undefined when it may. */
  check(will: { readonly topic: string; readonly retain?: boolean }): Problem | undefined {
    const owner = willOwner(will);
    if (owner === undefined) return { code: 'ERR_MQTT_WILL_DENIED', reason: 'will without a known owner' };
    if (this.#o.revocation.isRevokedId(owner))
      return { code: 'ERR_MQTT_WILL_DENIED', reason: 'will owner is revoked' };
    return willProblem(this.#o.policy.grantsFor(owner, this.#o.self()), will, this.#o.topics);
  }
}
