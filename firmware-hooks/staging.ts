/**
 * The gateway's side of per-gateway firmware staging (runtime/firmware/protocol.ts):
 * post-install stages the new version with the current SVID (mTLS) and keeps the ticket in the
 * OTA state file (0600); commit and rollback end the staging with that ticket. Endpoints fail
 * over as the agent's do (`Failover`): an unreachable one is skipped, a refusal is final.
 *
 * @example
 * ```ts
 * const staging = issuerStaging(upstream);
 * const { gateway, ticket } = await staging.stage('2.0', currentSvid);
 * await staging.end('commit', gateway, ticket);
 * ```
 */

import { type EndStagingResponse, FIRMWARE_PATHS, type StageResponse } from '../runtime/firmware/protocol.ts';
import type { X509Svid } from '../runtime/sources/types.ts';
import { Failover } from '../runtime/upstream/failover.ts';
import type { Upstream } from '../runtime/upstream/types.ts';
import { HookError } from './errors.ts';

/** Upstream failures that decide nothing about this gateway: try again later (exit 21). */
export const TRANSIENT_UPSTREAM: ReadonlySet<string> = new Set([
  'ERR_UPSTREAM_UNREACHABLE',
  'ERR_UPSTREAM_UNAVAILABLE',
  'ERR_UPSTREAM_RATE_LIMITED',
]);

export interface FirmwareStaging {
  stage(version: string, svid: X509Svid): Promise<{ gateway: string; ticket: string }>;
  end(kind: 'commit' | 'retract', gateway: string, ticket: string): Promise<EndStagingResponse>;
}

export function issuerStaging(upstream: Upstream): FirmwareStaging {
  const failover = new Failover(upstream);
  return {
    async stage(version, svid) {
      const r = await failover.run((ep) =>
        ep.post<StageResponse>(FIRMWARE_PATHS.stage, { version }, { clientSvid: svid }),
      );
      if (typeof r?.gateway !== 'string' || !(r.ticket instanceof Uint8Array) || r.ticket.length < 16)
        throw new HookError('ERR_HOOK_PUBLISH', 'the issuer answered the staging without a ticket');
      return { gateway: r.gateway, ticket: Buffer.from(r.ticket).toString('base64url') };
    },
    end: (kind, gateway, ticket) =>
      failover.run((ep) =>
        ep.post<EndStagingResponse>(FIRMWARE_PATHS[kind], {
          gateway,
          ticket: Buffer.from(ticket, 'base64url'),
        }),
      ),
  };
}
