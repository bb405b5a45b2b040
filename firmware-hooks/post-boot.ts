/**
 * Phase `post-boot`: the commit gate. After the reboot into the new firmware:
 *
 * 1. re-verify the recorded manifest against the firmware keys (an unsigned or foreign manifest
 *    fails here even if it got past an earlier phase);
 * 2. read the measured PCR values and compare them with the manifest's: a firmware that does not
 *    measure as its vendor promised is never committed;
 * 3. re-attest with the new measurements (the issuer checks the quote against the published
 *    reference values) and rotate the SVID, in the store opened with the current sealing — with
 *    a PCR policy post-install already sealed the data key to the promised values, so the store
 *    opens only if the firmware measured as promised (no unsealed transition, no re-seal here).
 *
 * A gateway whose attestor measures nothing (no TPM) skips step 2 with a warning: re-attestation
 * stays the gate.
 *
 * Any failure records phase `failed` and throws: the CLI exits 4 and the OTA tool must roll back.
 * An issuer that cannot be reached decides nothing: the phase stays `installed` and the CLI exits
 * 21 (Mender's retry-later; the other adapters wait and call again), so a network that comes up
 * late after the reboot does not roll a good update back.
 * Running it again after success is a no-op.
 */
import { isEdgewardError } from '../runtime/core/error.ts';
import type { HookContext, Reattested } from './context.ts';
import { HookError } from './errors.ts';
import { expectPhase, readState, writeState } from './ota-state.ts';
import { isBank, pcrDifferences } from './pcrs.ts';
import { checkManifest } from './pre-install.ts';
import { TRANSIENT_UPSTREAM } from './staging.ts';

export async function postBoot(ctx: HookContext): Promise<{ version: string; identity?: Reattested }> {
  const state = expectPhase(await readState(ctx.stateDir), ['installed', 'booted'], 'post-boot');
  if (state.phase === 'booted') return { version: state.version };
  try {
    const manifest = checkManifest(state.manifest, ctx.trusted);
    if (!isBank(manifest.bank)) throw new HookError('ERR_HOOK_PCR_MISMATCH', `unknown bank ${manifest.bank}`);
    if (ctx.readPcrs === undefined)
      ctx.logger.warn('this gateway measures nothing: PCR check skipped, re-attestation is the gate', {
        event: 'ota.post-boot.no-pcrs',
      });
    else {
      const indices = Object.keys(manifest.pcrs).map(Number);
      const measured = await ctx.readPcrs(manifest.bank, indices);
      const differ = pcrDifferences(manifest.pcrs, measured);
      if (differ.length > 0)
        throw new HookError(
          'ERR_HOOK_PCR_MISMATCH',
          `measured ${manifest.bank} PCR ${differ.join(',')} differ from the manifest of ${manifest.version}`,
          { pcrs: differ },
        );
    }
    let identity: Reattested;
    try {
      identity = await ctx.reattest(ctx.sealing.current);
    } catch (err) {
      const code = isEdgewardError(err) ? err.code : '';
      if (TRANSIENT_UPSTREAM.has(code))
        throw new HookError(
          'ERR_HOOK_ISSUER_UNREACHABLE',
          `the issuer is not reachable yet (${code}): retry later`,
          {},
          { cause: err },
        );
      throw new HookError(
        'ERR_HOOK_REATTEST',
        `re-attestation failed: ${isEdgewardError(err) ? `${err.code}: ` : ''}${(err as Error).message}`,
        {},
        { cause: err },
      );
    }
    await writeState(ctx.stateDir, { ...state, phase: 'booted', updatedAt: ctx.now() });
    ctx.logger.info('identity re-established after the firmware update', {
      event: 'ota.post-boot',
      version: manifest.version,
      spiffeId: identity.spiffeId,
      serial: identity.serial,
    });
    return { version: manifest.version, identity };
  } catch (err) {
    const code = isEdgewardError(err) ? err.code : 'ERR_HOOK_REATTEST';
    if (code === 'ERR_HOOK_ISSUER_UNREACHABLE') {
      // Nothing was decided: the update stays `installed` and post-boot runs again.
      ctx.logger.warn('issuer not reachable after the firmware update: retry later', {
        event: 'ota.post-boot.retry',
        version: state.version,
      });
      throw err;
    }
    await writeState(ctx.stateDir, {
      ...state,
      phase: 'failed',
      failure: { code, message: (err as Error).message },
      updatedAt: ctx.now(),
    });
    ctx.logger.error('identity not re-established after the firmware update: roll back', {
      event: 'ota.post-boot.failed',
      version: state.version,
      code,
    });
    throw err;
  }
}
