/**
 * `rotation.rootSwitchWindow`: after an issuer CA switch the agent renews its delegated CA under
 * the new root at a random time within this window (runtime/agent/root-switch.ts). A duration of
 * at most 7 days (0: at once), refused with its path and line by both validators (the precompiled
 * one and the runtime ajv), handed by the plan to the agent (its 1 h default when absent).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { planFromConfig } from '../../../runtime/agent/plan.ts';
import { loadAgentConfigText } from '../../../runtime/config/agent-load.ts';
import { AGENT_ROLE, loadConfigText } from '../../../runtime/config/load.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { nullLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { rejects } from '../../helpers/rejects.ts';

const config = (w: string | undefined) => `version: 2
trustDomain: fleet.example
dataDir: /var/lib/edgeward
tpm: swtpm:path=/run/swtpm.sock
attestation: { method: tpm, pcrs: "sha256:0,1,2,7" }
upstream:
  endpoints: [https://issuer.fleet.example:8443]
rotation:
  breakerFailures: 5
${w === undefined ? '' : `  rootSwitchWindow: ${w}\n`}`;

test('accepted: 0 up to 7d, in any unit', () => {
  for (const w of ['0s', '1ms', '1h', '90m', '24h', '7d', '168h']) {
    assert.is(loadAgentConfigText(config(w)).rotation?.rootSwitchWindow, w);
    assert.is(loadConfigText(config(w), AGENT_ROLE).rotation?.rootSwitchWindow, w);
  }
});

test('refused: past 7 days, not a duration, with its path and line, by both validators', async () => {
  for (const w of ['8d', '169h', '604800001ms', 'soon', '-1h']) {
    for (const load of [() => loadAgentConfigText(config(w)), () => loadConfigText(config(w), AGENT_ROLE)]) {
      const err = await rejects<{ issues: { path: string; message: string }[] }>(load, 'ERR_CONFIG_INVALID');
      assert.is(err.issues.length, 1, w);
      assert.is(err.issues[0]?.path, 'rotation.rootSwitchWindow');
      assert.match(err.issues[0]?.message ?? '', /at most 7d.*\(line 10\)/);
    }
  }
});

test('the plan hands it to the agent; absent, the agent keeps its 1 h default', async () => {
  const deps = { clock: systemClock, random: cryptoRandom, logger: nullLogger };
  const plan = await planFromConfig(loadAgentConfigText(config('24h')), deps);
  assert.is(plan.agent?.rootSwitchWindowMs, 24 * 3_600_000);
  await plan.attestor.close().catch(() => {});
  const dflt = await planFromConfig(loadAgentConfigText(config(undefined)), deps);
  assert.is(dflt.agent?.rootSwitchWindowMs, undefined);
  await dflt.attestor.close().catch(() => {});
});

test.run();
