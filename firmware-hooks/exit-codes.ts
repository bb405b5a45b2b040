/**
 * The process exit codes of `edgeward hook <phase>`: the contract with the OTA tools.
 *
 * | code | meaning | what the OTA tool does |
 * |---|---|---|
 * | 0  | phase done | continue |
 * | 1  | phase failed (state, store, issuer unreachable...) | abort the update / roll back |
 * | 2  | usage error (bad flags) | abort |
 * | 3  | manifest refused: missing, unsigned, unknown key, wrong version | do not install |
 * | 4  | post-boot: identity not re-established (any failure) | roll back (never commit) |
 * | 21 | not ready yet: post-boot has not finished, or could not reach the issuer | Mender: retry the state script later |
 *
 * 21 is Mender's "retry later" state-script code; RAUC and SWUpdate adapters treat it as "wait
 * and call again" themselves.
 */
import { isEdgewardError } from '../runtime/core/error.ts';
import type { HookErrorCode } from './errors.ts';

export const HOOK_EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  manifestRefused: 3,
  identityLost: 4,
  retryLater: 21,
} as const;

export type HookExit = (typeof HOOK_EXIT)[keyof typeof HOOK_EXIT];

/** The exit code for a failure of `phase`. */
export function exitCodeFor(err: unknown, phase: string): HookExit {
  if (!isEdgewardError(err)) return phase === 'post-boot' ? HOOK_EXIT.identityLost : HOOK_EXIT.failed;
  if (phase === 'post-boot') {
    if (err.code === 'ERR_CLI_USAGE') return HOOK_EXIT.usage;
    return err.code === 'ERR_HOOK_ISSUER_UNREACHABLE' ? HOOK_EXIT.retryLater : HOOK_EXIT.identityLost;
  }
  const code = err.code as HookErrorCode | string;
  switch (code) {
    case 'ERR_HOOK_MANIFEST_MISSING':
    case 'ERR_HOOK_MANIFEST_REFUSED':
    case 'ERR_HOOK_VERSION_MISMATCH':
    case 'ERR_HOOK_NO_FIRMWARE_KEY':
      return HOOK_EXIT.manifestRefused;
    case 'ERR_HOOK_PCR_MISMATCH':
    case 'ERR_HOOK_REATTEST':
      return HOOK_EXIT.identityLost;
    case 'ERR_HOOK_NOT_READY':
    case 'ERR_HOOK_ISSUER_UNREACHABLE':
      return HOOK_EXIT.retryLater;
    case 'ERR_CLI_USAGE':
    case 'ERR_HOOK_PCR_VALUES':
      return HOOK_EXIT.usage;
    default:
      return HOOK_EXIT.failed;
  }
}
