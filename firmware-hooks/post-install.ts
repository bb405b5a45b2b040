/**
 * Phase `post-install` (the new firmware is written, the gateway has not rebooted yet):
 *
 * 1. re-verify the manifest recorded by pre-install;
 * 2. publish it to the issuer, so the new firmware's PCR values are reference values before the
 *    gateway ever quotes them, and stage the version for this gateway (mTLS with its current
 *    SVID; the issuer's ticket goes into the state file): from now on the issuer accepts this
 *    gateway's quotes for the version it runs and the staged one only;
 * 3. prepare the store: snapshot the sealed identity and data-key blob, then — when the agent
 *    seals to a PCR policy — re-seal the data key to the values the manifest promises, so that
 *    after the reboot it opens only if the new firmware measured as its vendor signed. A manifest
 *    that does not cover every PCR of the policy is refused (ERR_HOOK_RESEAL) before anything
 *    changes.
 *
 * Any failure leaves the store as it was (the snapshot is taken before the re-seal, and the
 * re-seal is one put) and the phase at `verified`.
 */
import { isEdgewardError } from '../runtime/core/error.ts';
import type { HookContext } from './context.ts';
import { HookError } from './errors.ts';
import { expectPhase, readState, writeState } from './ota-state.ts';
import { checkManifest } from './pre-install.ts';
import { resealDataKey, snapshotStore } from './store-snapshot.ts';

export async function postInstall(ctx: HookContext): Promise<{ version: string }> {
  const state = expectPhase(await readState(ctx.stateDir), ['verified'], 'post-install');
  const manifest = checkManifest(state.manifest, ctx.trusted);
  const forReboot = ctx.sealing.forReboot(manifest); // refuses a manifest that misses a sealed PCR
  try {
    await ctx.publish(state.manifest);
  } catch (err) {
    throw new HookError(
      'ERR_HOOK_PUBLISH',
      `the issuer did not accept the manifest of ${manifest.version}: ${isEdgewardError(err) ? `${err.code}: ` : ''}${(err as Error).message}`,
      { version: manifest.version },
      { cause: err },
    );
  }
  let issuer: { gateway: string; ticket: string } | undefined;
  if (ctx.staging !== undefined) {
    const svid = await ctx.staging.currentSvid(); // a store failure is its own error, not the issuer's
    try {
      issuer = await ctx.staging.issuer.stage(manifest.version, svid);
    } catch (err) {
      throw new HookError(
        'ERR_HOOK_PUBLISH',
        `the issuer did not stage ${manifest.version} for this gateway: ${isEdgewardError(err) ? `${err.code}: ` : ''}${(err as Error).message}`,
        { version: manifest.version },
        { cause: err },
      );
    }
  }
  await snapshotStore(ctx.db);
  if (forReboot !== undefined) await resealDataKey(ctx.db, ctx.sealing.current, forReboot);
  await writeState(ctx.stateDir, {
    ...state,
    phase: 'installed',
    ...(issuer === undefined ? {} : { issuer }),
    updatedAt: ctx.now(),
  });
  ctx.logger.info('firmware update prepared: reference values published, store ready to re-seal', {
    event: 'ota.post-install',
    version: manifest.version,
  });
  return { version: manifest.version };
}
