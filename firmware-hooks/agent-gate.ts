/**
 * `edgeward hook agent-gate`: may the agent start now? It is the `ExecCondition=` of
 * edgeward.service (drop-in adapters/systemd/edgeward.service.d/ota-gate.conf).
 *
 * From post-install until post-boot (phase `installed`), and after a failed post-boot until the
 * rollback (phase `failed`), the agent must stay down: the store may be sealed to the PCR values
 * of firmware that is not running, and an agent that cannot unseal its store wipes it and starts
 * afresh — which would also wipe the snapshot that rollback restores. Deny by default: an
 * unreadable state file keeps the agent down too.
 */
import { isEdgewardError } from '../runtime/core/error.ts';
import { readState } from './ota-state.ts';

export async function agentMayStart(stateDir: string): Promise<{ ok: boolean; reason: string }> {
  try {
    const state = await readState(stateDir);
    if (state === undefined) return { ok: true, reason: 'no update in flight' };
    if (state.phase === 'installed')
      return { ok: false, reason: `update ${state.version} waits for post-boot: the agent stays down` };
    if (state.phase === 'failed')
      return { ok: false, reason: `update ${state.version} failed post-boot and waits for rollback` };
    return { ok: true, reason: `update ${state.version} is ${state.phase}` };
  } catch (err) {
    if (!isEdgewardError(err)) throw err;
    return { ok: false, reason: `${err.code}: ${err.message}` };
  }
}
