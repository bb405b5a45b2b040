/**
 * The broker's `authorizePublish` with the journal's write-ahead in between: aedes 1.2 sends a
 * QoS 1 PUBACK as soon as `authorizePublish` calls back, before it routes (and so queues) the
 * message, so a message a persistent session will keep is logged ahead first
 * (`DurablePersistence.logAhead`) and the callback, hence the PUBACK, follows that write.
 *
 * @example
 * ```ts
 * new Aedes({ persistence, authorizePublish: guardPublish(persistence, authorizePublishByPolicy(…)) });
 * ```
 */
import type { StoredPacket } from './codec.ts';

/** What the guard needs of the persistence: undefined when the message needs no logging. */
export interface LogsAhead {
  logAhead(packet: StoredPacket): Promise<void> | undefined;
}

export function guardPublish<C, P extends StoredPacket>(
  persistence: LogsAhead,
  authorize: (client: C, packet: P, done: (err?: Error | null) => void) => void,
): (client: C, packet: P, done: (err?: Error | null) => void) => void {
  return (client, packet, done) =>
    authorize(client, packet, (err) => {
      const logged = err ? undefined : persistence.logAhead(packet);
      if (logged === undefined) {
        done(err);
        return;
      }
      logged.then(
        () => done(null),
        (e: Error) => done(e),
      );
    });
}
