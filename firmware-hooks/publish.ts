/**
 * Publishing a firmware manifest to the issuer (`POST /v1/firmware/manifests`, protocol.ts) as
 * reference values. The body is `{ manifest: <envelope text> }`: the vendor's signed envelope,
 * unchanged, so the issuer verifies the vendor's signature itself. Endpoints fail over as the
 * agent's do (`Failover`): an unreachable one is skipped, a refusal is final.
 */

import { Failover } from '../runtime/upstream/failover.ts';
import { PATHS } from '../runtime/upstream/protocol.ts';
import type { Upstream } from '../runtime/upstream/types.ts';

export function issuerPublisher(upstream: Upstream): (manifestText: string) => Promise<void> {
  const failover = new Failover(upstream);
  return async (manifest) => {
    await failover.run((ep) => ep.post(PATHS.manifests, { manifest }));
  };
}
