/**
 * `workload.containers` (where Docker, Podman and containerd record their containers, for the
 * `container:image` selectors): accepted with a runtime switched off by `null`, refused with its
 * path and line by both validators, and merged by the plan over Debian's defaults.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AGENT_ROLE, loadConfigText } from '../../../runtime/config/load.ts';
import { DEFAULT_CONTAINER_ROOTS } from '../../../runtime/workload/container-image.ts';
import { MINIMAL_AGENT, planOf, refusedByBoth } from './agent-config-rig.ts';

const config = (containers: string) => `${MINIMAL_AGENT}workload:
  entriesFile: /etc/edgeward/workloads.yaml
  containers:
${containers}`;

test('accepted by both validators; the plan fills in the runtimes not named, null switches one off', async () => {
  const text = config('    docker: /srv/docker\n    containerd: null\n');
  assert.equal(loadConfigText(text, AGENT_ROLE).workload?.containers, {
    docker: '/srv/docker',
    containerd: null,
  });
  const plan = await planOf(text);
  assert.equal(plan.workload?.containers, {
    docker: '/srv/docker',
    podman: DEFAULT_CONTAINER_ROOTS.podman,
    containerd: null,
  });
  const none = await planOf(config('').replace('  containers:\n', ''));
  assert.is(none.workload?.containers, undefined); // the server then uses DEFAULT_CONTAINER_ROOTS
});

test('refused with path and line: an unknown runtime, a podman root without runRoot, an empty path', async () => {
  const cases: [string, string, number][] = [
    ['    crio: /run/crio\n', 'workload.containers.crio', 11],
    ['    podman: { graphRoot: /var/lib/containers/storage }\n', 'workload.containers.podman', 11],
    ['    docker: ""\n', 'workload.containers.docker', 11],
  ];
  for (const [yaml, path, line] of cases)
    for (const issues of await refusedByBoth(config(yaml)))
      assert.ok(
        issues.some((i) => i.path.startsWith(path) && i.message.includes(`(line ${line})`)),
        `${yaml}: ${JSON.stringify(issues)}`,
      );
});

test.run();
