/**
 * `rotation.rootSwitchWindow`: after an issuer CA switch the agent renews its delegated CA under
 * the new root at a random time within this window (runtime/agent/root-switch.ts). A duration of
 * at most 7 days (0: at once), refused with its path and line by both validators (the precompiled
 * one and the runtime ajv), handed by the plan to the agent (its 1 h default when absent).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAgentConfigText } from '../../../runtime/config/agent-load.ts';
import { AGENT_ROLE, loadConfigText } from '../../../runtime/config/load.ts';
import { MINIMAL_AGENT, planOf, refusedByBoth } from './agent-config-rig.ts';

const config = (w: string | undefined) => `${MINIMAL_AGENT}rotation:
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
    for (const issues of await refusedByBoth(config(w))) {
      assert.is(issues.length, 1, w);
      assert.is(issues[0]?.path, 'rotation.rootSwitchWindow');
      assert.match(issues[0]?.message ?? '', /at most 7d.*\(line 10\)/);
    }
  }
});

test('the plan hands it to the agent; absent, the agent keeps its 1 h default', async () => {
  assert.is((await planOf(config('24h'))).agent?.rootSwitchWindowMs, 24 * 3_600_000);
  assert.is((await planOf(config(undefined))).agent?.rootSwitchWindowMs, undefined);
});

test.run();
