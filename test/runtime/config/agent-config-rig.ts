/**
 * The rig of the agent config field tests (one file per field): the smallest valid agent config,
 * a document refused by both validators (the precompiled one and the runtime ajv), and the plan
 * made from a document with its attestor closed again.
 *
 * @example
 * ```ts
 * const issues = await refusedByBoth(`${MINIMAL_AGENT}rotation:\n  rootSwitchWindow: 8d\n`);
 * const plan = await planOf(`${MINIMAL_AGENT}rotation:\n  rootSwitchWindow: 1h\n`);
 * ```
 */
import { planFromConfig } from '../../../runtime/agent/plan.ts';
import type { AgentPlan } from '../../../runtime/agent/run.ts';
import { loadAgentConfigText } from '../../../runtime/config/agent-load.ts';
import { AGENT_ROLE, loadConfigText } from '../../../runtime/config/load.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { nullLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import type { ConfigIssue } from '../../../runtime/errors.ts';
import { rejects } from '../../helpers/rejects.ts';

/** Seven lines: a section appended starts at line 8, its first field at line 9. */
export const MINIMAL_AGENT = `version: 2
trustDomain: fleet.example
dataDir: /var/lib/edgeward
tpm: swtpm:path=/run/swtpm.sock
attestation: { method: tpm, pcrs: "sha256:0,1,2,7" }
upstream:
  endpoints: [https://issuer.fleet.example:8443]
`;

/** Asserts both validators refuse `text` with ERR_CONFIG_INVALID; their issues, precompiled first. */
export async function refusedByBoth(text: string): Promise<(readonly ConfigIssue[])[]> {
  const out: (readonly ConfigIssue[])[] = [];
  for (const load of [() => loadAgentConfigText(text), () => loadConfigText(text, AGENT_ROLE)]) {
    const err = await rejects<{ issues: readonly ConfigIssue[] }>(load, 'ERR_CONFIG_INVALID');
    out.push(err.issues);
  }
  return out;
}

/** The plan of `text` (loaded by the agent's validator), its attestor closed: only its values are used. */
export async function planOf(text: string): Promise<AgentPlan> {
  const plan = await planFromConfig(loadAgentConfigText(text), {
    clock: systemClock,
    random: cryptoRandom,
    logger: nullLogger,
  });
  await plan.attestor.close().catch(() => {});
  return plan;
}
