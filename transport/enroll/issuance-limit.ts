/**
 * One issuance budget per device, shared by every path that gets a device certificate signed:
 * EST `simpleenroll`/`simplereenroll` and renewal over MQTT (`$edgeward/renew/<id>`) hand their
 * requests to the same wrapped signer, so a device cannot get around the limit by switching
 * protocols. At most `perMinute` certificates per device id in fixed one-minute windows on the
 * gateway's clock; past it `ERR_ENROLL_RATE_LIMITED` (HTTP 429 on EST, an error reply on MQTT),
 * before anything is signed (a join token stays unconsumed). The table is bounded.
 *
 * @example
 * ```ts
 * const signer = limitingIssuance(refusingRevoked(agent.deviceSigner, revocations), { perMinute: 10, clock });
 * ```
 */
import type { Clock } from '../../runtime/core/clock.ts';
import type { DeviceSigner } from '../../runtime/sources/types.ts';
import { TransportError } from '../errors.ts';

const MAX_TRACKED = 10_000;

export function limitingIssuance(signer: DeviceSigner, o: { perMinute: number; clock: Clock }): DeviceSigner {
  if (!Number.isInteger(o.perMinute) || o.perMinute < 1)
    throw new TypeError('perMinute must be a positive integer');
  const seen = new Map<string, { start: number; count: number }>();
  return {
    get gatewayId() {
      return signer.gatewayId;
    },
    async signDevice(request) {
      const now = o.clock.now();
      let e = seen.get(request.deviceId);
      if (e === undefined || now - e.start >= 60_000) {
        if (seen.size >= MAX_TRACKED) seen.clear();
        e = { start: now, count: 0 };
        seen.set(request.deviceId, e);
      }
      if (e.count >= o.perMinute)
        throw new TransportError(
          'ERR_ENROLL_RATE_LIMITED',
          `device ${request.deviceId} got ${o.perMinute} certificates this minute, try again later`,
        );
      // Counted up front (requests in flight too), given back when nothing was issued: a refused
      // CSR does not use the budget.
      const entry = e;
      entry.count++;
      try {
        return await signer.signDevice(request);
      } catch (err) {
        entry.count--;
        throw err;
      }
    },
  };
}
