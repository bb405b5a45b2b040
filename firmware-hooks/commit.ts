/**
 * Phases `commit` and `rollback`.
 *
 * `commit` is allowed only after post-boot re-established the identity: it tells the issuer to make
 * the new version this gateway's only accepted one (so the old firmware no longer attests), drops
 * the snapshot of the previous identity and ends the update. An issuer that cannot be reached
 * answers 21 (retry later) and changes nothing. Asked while post-boot has not finished it answers
 * "not ready" (exit 21, Mender's retry-later), and after a failed post-boot it refuses (exit 1),
 * so the OTA tool rolls back.
 *
 * `rollback` restores the previous sealing of the data key and the previous identity records
 * (one atomic batch), asks the issuer to drop the staged version (best effort, with the staging
 * ticket: no unsealed key needed) and ends the update. The previous firmware stays accepted, so
 * the restored firmware attests as before.
 */
import { isEdgewardError } from '../runtime/core/error.ts';
import type { Logger } from '../runtime/core/logger.ts';
import type { LevelDb } from '../runtime/store/sealed-store.ts';
import { HookError } from './errors.ts';
import { clearState, expectPhase, readState } from './ota-state.ts';
import { type FirmwareStaging, TRANSIENT_UPSTREAM } from './staging.ts';
import { dropSnapshot, hasSnapshot, restoreSnapshot } from './store-snapshot.ts';

export interface EndInput {
  readonly stateDir: string;
  /** Opened lazily: the store is touched only when there is something to drop or restore. */
  readonly db: () => Promise<LevelDb>;
  readonly logger: Logger;
  /** The issuer's staging endpoints (absent: nothing is told to the issuer). */
  readonly staging?: FirmwareStaging;
}

export async function commit(input: EndInput): Promise<{ version: string }> {
  const state = await readState(input.stateDir);
  if (state?.phase === 'installed' || state?.phase === 'verified')
    throw new HookError('ERR_HOOK_NOT_READY', `update ${state.version}: post-boot has not finished yet`, {
      phase: state.phase,
    });
  const done = expectPhase(state, ['booted'], 'commit');
  if (done.issuer !== undefined && input.staging !== undefined) {
    try {
      await input.staging.end('commit', done.issuer.gateway, done.issuer.ticket);
    } catch (err) {
      const code = isEdgewardError(err) ? err.code : '';
      throw new HookError(
        TRANSIENT_UPSTREAM.has(code) ? 'ERR_HOOK_ISSUER_UNREACHABLE' : 'ERR_HOOK_PUBLISH',
        `the issuer did not commit ${done.version} for this gateway: ${code}: ${(err as Error).message}`,
        { version: done.version },
        { cause: err },
      );
    }
  }
  await dropSnapshot(await input.db());
  await clearState(input.stateDir);
  input.logger.info('firmware update committed', { event: 'ota.commit', version: done.version });
  return { version: done.version };
}

export async function rollback(input: EndInput): Promise<{ version: string; restored: boolean }> {
  const state = expectPhase(
    await readState(input.stateDir),
    ['verified', 'installed', 'booted', 'failed'],
    'rollback',
  );
  let restored = false;
  if (state.phase !== 'verified') {
    const db = await input.db();
    if (!(await hasSnapshot(db)))
      throw new HookError('ERR_HOOK_NO_SNAPSHOT', `update ${state.version}: no snapshot to restore`);
    await restoreSnapshot(db);
    restored = true;
  }
  if (state.issuer !== undefined && input.staging !== undefined) {
    // Best effort: the local restore never depends on the issuer. A staging left behind is
    // replaced by the gateway's next staging.
    await input.staging.end('retract', state.issuer.gateway, state.issuer.ticket).catch((err: unknown) =>
      input.logger.warn('the issuer did not retract the staged firmware', {
        event: 'ota.rollback.retract',
        version: state.version,
        code: isEdgewardError(err) ? err.code : undefined,
      }),
    );
  }
  await clearState(input.stateDir);
  input.logger.warn('firmware update rolled back; previous identity and sealing restored', {
    event: 'ota.rollback',
    version: state.version,
    restored,
  });
  return { version: state.version, restored };
}
