/**
 * `broker.deviceSvidTtl` (issue 14 item 3): a duration > 0 and at most 30 days, refused with its
 * path and line by both validators (the precompiled one and the runtime ajv), mapped by the plan
 * to the device signer's TTL (default 1 h when absent).
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

const config = (ttl: string | undefined) => `version: 2
trustDomain: fleet.example
dataDir: /var/lib/edgeward
tpm: swtpm:path=/run/swtpm.sock
attestation: { method: tpm, pcrs: "sha256:0,1,2,7" }
upstream:
  endpoints: [https://issuer.fleet.example:8443]
broker:
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
    for (const load of [
      () => loadAgentConfigText(config(ttl)),
      () => loadConfigText(config(ttl), AGENT_ROLE),
    ]) {
      const err = await rejects<{ issues: { path: string; message: string }[] }>(load, 'ERR_CONFIG_INVALID');
      assert.is(err.issues.length, 1, ttl);
      assert.is(err.issues[0]?.path, 'broker.deviceSvidTtl');
      assert.match(err.issues[0]?.message ?? '', /> 0 and at most 30d.*\(line 10\)/);
    }
  }
});

test('the plan hands it to the device signer; absent, the signer keeps its 1 h default', async () => {
  const deps = { clock: systemClock, random: cryptoRandom, logger: nullLogger };
  const plan = await planFromConfig(loadAgentConfigText(config('2h')), deps);
  assert.is(plan.agent?.deviceTtlMs, 2 * 3_600_000);
  await plan.attestor.close().catch(() => {});
  const dflt = await planFromConfig(loadAgentConfigText(config(undefined)), deps);
  assert.is(dflt.agent?.deviceTtlMs, undefined);
  await dflt.attestor.close().catch(() => {});
});

test.run();
