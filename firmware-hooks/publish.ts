/**
 * Publishing a firmware manifest to the issuer (`POST /v1/firmware/manifests`, protocol.ts) as
 * reference values. The body is `{ manifest: <envelope text> }`: the vendor's signed envelope,
 * unchanged, so the issuer verifies the vendor's signature itself. Endpoints are tried in order;
 * the last failure is thrown.
 */

import { PATHS } from '../runtime/upstream/protocol.ts';
import type { Upstream } from '../runtime/upstream/types.ts';
import { HookError } from './errors.ts';

export function issuerPublisher(upstream: Upstream): (manifestText: string) => Promise<void> {
  return async (manifest) => {
    let last: unknown;
    for (const ep of upstream.endpoints) {
      try {
        await ep.post(PATHS.manifests, { manifest });
        return;
      } catch (err) {
        last = err;
      }
    }
    throw last ?? new HookError('ERR_HOOK_PUBLISH', 'no upstream endpoint configured');
  };
}
