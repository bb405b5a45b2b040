/**
 * Error codes of `firmware-hooks/`: the OTA phases (`edgeward hook <phase>`), the vendor's manifest
 * tool and the build to flash. Each code maps to one documented process exit code
 * (`exit-codes.ts`), which is what Mender, RAUC and SWUpdate act on.
 */
import { EdgewardError } from '../runtime/core/error.ts';

export type HookErrorCode =
  /** No firmware manifest was given or found for the update. (pre-install: exit 3) */
  | 'ERR_HOOK_MANIFEST_MISSING'
  /** The manifest is malformed, unsigned, or not signed by a configured firmware key. (exit 3) */
  | 'ERR_HOOK_MANIFEST_REFUSED'
  /** The manifest is for another version than the update being installed. (exit 3) */
  | 'ERR_HOOK_VERSION_MISMATCH'
  /** No firmware key is configured: every manifest would be refused (deny by default). (exit 3) */
  | 'ERR_HOOK_NO_FIRMWARE_KEY'
  /** A phase run out of order (post-boot without post-install, commit before post-boot...). (exit 1) */
  | 'ERR_HOOK_STATE'
  /** Commit asked before post-boot finished: try again later. (exit 21, Mender's retry-later) */
  | 'ERR_HOOK_NOT_READY'
  /** The OTA state file is unreadable, tampered or not 0600. (exit 1) */
  | 'ERR_HOOK_STATE_FILE'
  /** The issuer did not accept the manifest as reference values. (post-install: exit 1) */
  | 'ERR_HOOK_PUBLISH'
  /** The PCR values measured after boot are not those the manifest promised. (post-boot: exit 4) */
  | 'ERR_HOOK_PCR_MISMATCH'
  /** Re-attestation with the new measurements failed: the identity is not re-established. (exit 4) */
  | 'ERR_HOOK_REATTEST'
  /**
   * post-boot could not reach the issuer (unreachable, unavailable, rate limited): nothing was
   * decided, the update stays `installed`. (exit 21: retry later; the OTA tool's retry budget
   * bounds it, then it rolls back)
   */
  | 'ERR_HOOK_ISSUER_UNREACHABLE'
  /** The store's data key could not be re-sealed or restored. (exit 4 in post-boot, 1 otherwise) */
  | 'ERR_HOOK_RESEAL'
  /** Nothing to restore: no snapshot of the previous identity exists. (rollback: exit 1) */
  | 'ERR_HOOK_NO_SNAPSHOT'
  /** The agent's store could not be opened (missing, locked by a running agent). (exit 1) */
  | 'ERR_HOOK_STORE'
  /** A vendor signing key file that is missing, not 0600, or not ECDSA P-256. (exit 1) */
  | 'ERR_HOOK_KEY'
  /** PCR values given to `hook manifest create` that do not parse. (exit 2) */
  | 'ERR_HOOK_PCR_VALUES'
  /** The gateway build failed (bundler, prebuilds, tarball). */
  | 'ERR_BUILD_FAILED';

/** A typed failure of an OTA phase; `fields` carries structured context (never key material). */
export class HookError extends EdgewardError<HookErrorCode> {
  readonly fields: Readonly<Record<string, unknown>>;

  constructor(
    code: HookErrorCode,
    message: string,
    fields: Readonly<Record<string, unknown>> = {},
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.fields = fields;
  }
}
