/**
 * `workload.containers` (where Docker, Podman and containerd record their containers, for the
 * `container:image` selectors): accepted with a runtime switched off by `null`, refused with its
 * path and line by both validators, and merged by the plan over Debian's defaults.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { planFromConfig } from '../../../runtime/agent/plan.ts';
import { loadAgentConfigText } from '../../../runtime/config/agent-load.ts';
import { AGENT_ROLE, loadConfigText } from '../../../runtime/config/load.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { nullLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { DEFAULT_CONTAINER_ROOTS } from '../../../runtime/workload/container-image.ts';
import { rejects } from '../../helpers/rejects.ts';

const config = (containers: string) => `version: 2
trustDomain: fleet.example
dataDir: /var/lib/edgeward
tpm: swtpm:path=/run/swtpm.sock
attestation: { method: tpm, pcrs: "sha256:0,1,2,7" }
upstream:
  endpoints: [https://issuer.fleet.example:8443]
workload:
  entriesFile: /etc/edgeward/workloads.yaml
  containers:
${containers}`;

test('accepted by both validators; the plan fills in the runtimes not named, null switches one off', async () => {
  const text = config('    docker: /srv/docker\n    containerd: null\n');
  assert.equal(loadConfigText(text, AGENT_ROLE).workload?.containers, {
    docker: '/srv/docker',
    containerd: null,
  });
  const deps = { clock: systemClock, random: cryptoRandom, logger: nullLogger };
  const plan = await planFromConfig(loadAgentConfigText(text), deps);
  assert.equal(plan.workload?.containers, {
    docker: '/srv/docker',
    podman: DEFAULT_CONTAINER_ROOTS.podman,
    containerd: null,
  });
  await plan.attestor.close().catch(() => {});
  const none = await planFromConfig(loadAgentConfigText(config('').replace('  containers:\n', '')), deps);
  assert.is(none.workload?.containers, undefined); // the server then uses DEFAULT_CONTAINER_ROOTS
  await none.attestor.close().catch(() => {});
});

test('refused with path and line: an unknown runtime, a podman root without runRoot, an empty path', async () => {
  const cases: [string, string, number][] = [
    ['    crio: /run/crio\n', 'workload.containers.crio', 11],
    ['    podman: { graphRoot: /var/lib/containers/storage }\n', 'workload.containers.podman', 11],
    ['    docker: ""\n', 'workload.containers.docker', 11],
  ];
  for (const [yaml, path, line] of cases)
    for (const load of [
      () => loadAgentConfigText(config(yaml)),
      () => loadConfigText(config(yaml), AGENT_ROLE),
    ]) {
      const err = await rejects<{ issues: { path: string; message: string }[] }>(load, 'ERR_CONFIG_INVALID');
      assert.ok(
        err.issues.some((i) => i.path.startsWith(path) && i.message.includes(`(line ${line})`)),
        `${yaml}: ${JSON.stringify(err.issues)}`,
      );
    }
});

test.run();
