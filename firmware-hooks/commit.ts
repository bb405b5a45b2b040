/**
 * Phases `commit` and `rollback`.
 *
 * `commit` is allowed only after post-boot re-established the identity: it drops the snapshot of
 * the previous identity and ends the update. Asked while post-boot has not finished it answers
 * "not ready" (exit 21, Mender's retry-later), and after a failed post-boot it refuses (exit 1),
 * so the OTA tool rolls back.
 *
 * `rollback` restores the previous sealing of the data key and the previous identity records
 * (one atomic batch) and ends the update. The previous firmware's reference values were never
 * removed from the issuer, so the restored firmware attests as before.
 */
import type { Logger } from '../runtime/core/logger.ts';
import type { LevelDb } from '../runtime/store/sealed-store.ts';
import { HookError } from './errors.ts';
import { clearState, expectPhase, readState } from './ota-state.ts';
import { dropSnapshot, hasSnapshot, restoreSnapshot } from './store-snapshot.ts';

export interface EndInput {
  readonly stateDir: string;
  /** Opened lazily: the store is touched only when there is something to drop or restore. */
  readonly db: () => Promise<LevelDb>;
  readonly logger: Logger;
}

export async function commit(input: EndInput): Promise<{ version: string }> {
  const state = await readState(input.stateDir);
  if (state?.phase === 'installed' || state?.phase === 'verified')
    throw new HookError('ERR_HOOK_NOT_READY', `update ${state.version}: post-boot has not finished yet`, {
      phase: state.phase,
    });
  const done = expectPhase(state, ['booted'], 'commit');
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
  await clearState(input.stateDir);
  input.logger.warn('firmware update rolled back; previous identity and sealing restored', {
    event: 'ota.rollback',
    version: state.version,
    restored,
  });
  return { version: state.version, restored };
}
