/**
 * Per-gateway firmware staging between the OTA hooks and the issuer (HTTPS + CBOR, as
 * runtime/upstream/protocol.ts). It makes the issuer know which firmware versions each gateway
 * may attest with:
 *
 * - `stage` (mTLS with the gateway's current SVID) `{ version }` → `{ gateway, version, ticket }`:
 *   post-install stages the new version for this gateway; until then a gateway accepts what it
 *   accepted before (every published version, or its committed one). The ticket (32 random bytes,
 *   only its SHA-256 kept) authorises ending this staging; it needs no unsealed key, because a
 *   rollback may run on firmware that cannot open the store.
 * - `commit` `{ gateway, ticket }`: the staged version becomes the gateway's only accepted
 *   version (a downgrade no longer attests); refused unless the gateway has attested with it.
 * - `retract` `{ gateway, ticket }`: rollback drops the staged version.
 */
export const FIRMWARE_PATHS = {
  stage: '/v1/firmware/stage',
  commit: '/v1/firmware/commit',
  retract: '/v1/firmware/retract',
} as const;

export interface StageRequest {
  version: string;
}

export interface StageResponse {
  gateway: string;
  version: string;
  ticket: Uint8Array;
}

export interface EndStagingRequest {
  gateway: string;
  ticket: Uint8Array;
}

export interface EndStagingResponse {
  gateway: string;
  /** The versions the gateway may attest with now; absent: every published version. */
  accepted?: string[];
}
