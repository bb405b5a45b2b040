/**
 * What revocation does to live sessions: every session whose SPIFFE ID, CA or certificate serial
 * is revoked is closed at once, and its will is dropped first (cleared on the connection and
 * deleted from the store), so a revoked device's will is never published.
 *
 * @example
 * ```ts
 * revocationSource.onRevoke(closeRevoked(sessions, dropWill, logger));
 * ```
 */
import type { Logger } from '../../runtime/core/logger.ts';
import type { Sessions } from './sessions.ts';

export function closeRevoked(
  sessions: Sessions,
  dropWill: (will: { clientId: string }) => void,
  logger: Logger,
): (revoked: { spiffeIds: readonly string[]; serials: readonly string[] }) => void {
  return ({ spiffeIds, serials }) => {
    for (const s of sessions.matching(new Set(spiffeIds), new Set(serials))) {
      logger.warn('session closed: revoked', { spiffeId: s.svid.spiffeId, clientId: s.clientId });
      if (s.mqtt !== undefined) {
        const hadWill = s.mqtt.will != null;
        s.mqtt.will = null;
        s.mqtt._will = null;
        if (hadWill) dropWill({ clientId: s.mqtt.id });
      }
      s.socket.destroy();
    }
  };
}
