/**
 * `broker.deviceSvidTtl` (issue 14 item 3): a duration > 0 and at most 30 days, refused with its
 * path and line by both validators (the precompiled one and the runtime ajv), mapped by the plan
 * to the device signer's TTL (default 1 h when absent).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAgentConfigText } from '../../../runtime/config/agent-load.ts';
import { AGENT_ROLE, loadConfigText } from '../../../runtime/config/load.ts';
import { MINIMAL_AGENT, planOf, refusedByBoth } from './agent-config-rig.ts';

const config = (ttl: string | undefined) => `${MINIMAL_AGENT}broker:
  listen: { port: 8883 }
${ttl === undefined ? '' : `  deviceSvidTtl: ${ttl}\n`}`;

test('accepted: 1ms up to 30d, in any unit', () => {
  for (const ttl of ['1ms', '1h', '90m', '7d', '720h', '30d']) {
    assert.is(loadAgentConfigText(config(ttl)).broker?.deviceSvidTtl, ttl);
    assert.is(loadConfigText(config(ttl), AGENT_ROLE).broker?.deviceSvidTtl, ttl);
  }
});

test('refused: 0, past 30 days, not a duration, with its path and line, by both validators', async () => {
  for (const ttl of ['0s', '0d', '31d', '721h', '2592000001ms', 'soon', '-1h']) {
    for (const issues of await refusedByBoth(config(ttl))) {
      assert.is(issues.length, 1, ttl);
      assert.is(issues[0]?.path, 'broker.deviceSvidTtl');
      assert.match(issues[0]?.message ?? '', /> 0 and at most 30d.*\(line 10\)/);
    }
  }
});

test('the plan hands it to the device signer; absent, the signer keeps its 1 h default', async () => {
  assert.is((await planOf(config('2h'))).agent?.deviceTtlMs, 2 * 3_600_000);
  assert.is((await planOf(config(undefined))).agent?.deviceTtlMs, undefined);
});

test.run();
