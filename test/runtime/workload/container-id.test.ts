/**
 * `container:id` only from a cgroup that root made: layouts of the cgroup mounts built in temp
 * dirs with real owners (the tests run as root; a subtree chowned to uid 4242 is what systemd's
 * delegation (`user@4242.service`) looks like), and, on this machine's own cgroup v2 hierarchy,
 * a real process that makes a cgroup named like a docker scope in its delegated subtree and moves
 * itself in: the kernel names it as that container, attestation and the Workload API server do
 * not (the old code gave it the container's id and its SVID). A container cgroup made by root
 * gets the id, through the same server.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { attest } from '../../../runtime/workload/attest.ts';
import { containerOf, trustedContainerOf } from '../../../runtime/workload/container-id.ts';
import { harness, PYTHON } from './harness.ts';

const ID = '5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f';
const CODE = 'ERR_WORKLOAD_CONTAINER_UNTRUSTED';
const USER = 4242;

let dir: string;
const procs: ChildProcess[] = [];
/** Real cgroups made by the tests, removed (deepest first) after their processes are gone. */
const cgroups: string[] = [];

test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgeward-cgroup-'));
});

test.after(async () => {
  for (const p of procs) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGKILL');
      await once(p, 'exit');
    }
  }
  for (const c of cgroups.reverse()) {
    try {
      rmdirSync(c);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Make directories (root-owned, 0755) below `root`; returns the last. */
function mk(root: string, ...parts: string[]): string {
  const d = join(root, ...parts);
  mkdirSync(d, { recursive: true, mode: 0o755 });
  return d;
}

/** A pure cgroup v2 mount: the root is the hierarchy (it has cgroup.controllers). */
function v2Root(name: string): string {
  const root = mk(dir, name);
  writeFileSync(join(root, 'cgroup.controllers'), 'cpu io memory pids\n');
  return root;
}

test('root-made container cgroups (v2): docker, containerd (CRI), podman, cri-o give their id', () => {
  const root = v2Root('v2');
  mk(root, 'system.slice', `docker-${ID}.scope`);
  assert.equal(trustedContainerOf(`0::/system.slice/docker-${ID}.scope\n`, root), {
    container: { id: ID, runtime: 'docker' },
  });
  mk(root, 'kubepods.slice', 'kubepods-pod1.slice', `cri-containerd-${ID}.scope`);
  assert.equal(
    trustedContainerOf(`0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-${ID}.scope\n`, root),
    { container: { id: ID, runtime: 'containerd' } },
  );
  // The container's own sub-cgroups are not checked: the process is inside the container either way.
  const inner = mk(root, 'machine.slice', `libpod-${ID}.scope`, 'container');
  chownSync(inner, USER, USER);
  assert.equal(trustedContainerOf(`0::/machine.slice/libpod-${ID}.scope/container\n`, root), {
    container: { id: ID, runtime: 'podman' },
  });
  mk(root, 'kubepods', 'besteffort', 'pod1', `crio-${ID}.scope`);
  assert.equal(trustedContainerOf(`0::/kubepods/besteffort/pod1/crio-${ID}.scope\n`, root), {
    container: { id: ID },
  });
  // A host process names no container: nothing to check, no error.
  assert.equal(trustedContainerOf('0::/user.slice/user-0.slice/session-1.scope\n', root), {});
});

test('a delegated subtree (owned by the user) gives no container:id, whatever it names, however deep', () => {
  const root = v2Root('v2-delegated');
  const service = mk(root, 'user.slice', `user-${USER}.slice`, `user@${USER}.service`);
  chownSync(service, USER, USER);
  const scope = mk(service, 'app.slice', `docker-${ID}.scope`);
  chownSync(join(service, 'app.slice'), USER, USER);
  chownSync(scope, USER, USER);
  const line = `0::/user.slice/user-${USER}.slice/user@${USER}.service/app.slice/docker-${ID}.scope\n`;
  const r = trustedContainerOf(line, root);
  assert.is(r.container, undefined);
  assert.is(r.error?.code, CODE);
  assert.match(r.error?.message ?? '', `user@${USER}.service belongs to uid ${USER}`);
  // Even with the container's own directory root-owned, the delegated ancestor refuses it.
  chownSync(scope, 0, 0);
  chownSync(join(service, 'app.slice'), 0, 0);
  assert.match(trustedContainerOf(line, root).error?.message ?? '', `belongs to uid ${USER}`);
  // Rootless podman, as it lays out its containers under the user's own service.
  mk(service, 'user.slice', `libpod-${ID}.scope`, 'container');
  const rootless = `0::/user.slice/user-${USER}.slice/user@${USER}.service/user.slice/libpod-${ID}.scope/container\n`;
  assert.is(trustedContainerOf(rootless, root).error?.code, CODE);
  assert.is(containerOf(rootless)?.id, ID); // the name alone says so
});

test('a group- or world-writable directory on the way, a missing one, or a path out of the namespace: refused', () => {
  const root = v2Root('v2-modes');
  const slice = mk(root, 'system.slice');
  mk(slice, `docker-${ID}.scope`);
  const line = `0::/system.slice/docker-${ID}.scope\n`;
  assert.equal(trustedContainerOf(line, root).container?.id, ID);
  chmodSync(slice, 0o775);
  assert.match(
    trustedContainerOf(line, root).error?.message ?? '',
    /system\.slice is writable by group or others \(mode 775\)/,
  );
  chmodSync(slice, 0o757);
  assert.is(trustedContainerOf(line, root).error?.code, CODE);
  chmodSync(slice, 0o755);
  // The cgroup is gone (the container stopped) or was never under this mount.
  const gone = trustedContainerOf(`0::/system.slice/docker-${'ab'.repeat(32)}.scope\n`, root);
  assert.match(gone.error?.message ?? '', /cannot check .*: ENOENT/);
  // Another cgroup namespace's paths (`/..`) cannot be mapped onto this mount.
  const outside = trustedContainerOf(`0::/../system.slice/docker-${ID}.scope\n`, root);
  assert.match(outside.error?.message ?? '', /not a plain path/);
  // No hierarchy at all under the root.
  assert.match(trustedContainerOf(line, mk(dir, 'empty')).error?.message ?? '', /no cgroup v2 hierarchy/);
});

test('hybrid and v1 layouts: v2 under unified/, v1 under <controllers> (symlinked names) and name=systemd', () => {
  const root = mk(dir, 'hybrid');
  const unified = mk(root, 'unified');
  writeFileSync(join(unified, 'cgroup.controllers'), '');
  mk(unified, 'system.slice', `docker-${ID}.scope`);
  assert.equal(trustedContainerOf(`0::/system.slice/docker-${ID}.scope\n`, root).container?.id, ID);
  // Docker's cgroupfs driver on v1: /docker/<id> in each controller's hierarchy.
  mk(root, 'cpu,cpuacct', 'docker', ID);
  symlinkSync('cpu,cpuacct', join(root, 'cpu'));
  assert.equal(trustedContainerOf(`4:cpu,cpuacct:/docker/${ID}\n`, root), {
    container: { id: ID, runtime: 'docker' },
  });
  mk(root, 'cpu,cpuacct', 'docker', 'cd'.repeat(32));
  assert.equal(trustedContainerOf(`4:cpu:/docker/${'cd'.repeat(32)}\n`, root).container?.id, 'cd'.repeat(32));
  const named = mk(root, 'systemd', 'user.slice');
  mk(named, `docker-${ID}.scope`);
  assert.equal(trustedContainerOf(`1:name=systemd:/user.slice/docker-${ID}.scope\n`, root).container?.id, ID);
  chownSync(named, USER, USER);
  // A refused line does not hide another hierarchy's root-made cgroup of the same process.
  const both = `1:name=systemd:/user.slice/docker-${ID}.scope\n4:cpu,cpuacct:/docker/${ID}\n0::/\n`;
  assert.equal(trustedContainerOf(both, root), { container: { id: ID, runtime: 'docker' } });
  assert.match(
    trustedContainerOf(`1:name=systemd:/user.slice/docker-${ID}.scope\n`, root).error?.message ?? '',
    `belongs to uid ${USER}`,
  );
  assert.match(
    trustedContainerOf(`7:blkio:/docker/${ID}\n`, root).error?.message ?? '',
    /no blkio hierarchy/,
  );
});

// ---- This machine's own cgroup v2 hierarchy (skipped where it is missing or read-only). ----

const V2 = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';

let realBase: string | null | undefined;

/** This test's own cgroup under the machine's v2 hierarchy, or undefined where none can be made. */
function realCgroups(): string | undefined {
  if (realBase !== undefined) return realBase ?? undefined;
  realBase = null;
  if (process.geteuid?.() !== 0 || !existsSync(join(V2, 'cgroup.controllers'))) return undefined;
  const base = join(V2, `edgeward-test-${process.pid}`);
  try {
    mkdirSync(base);
  } catch {
    return undefined;
  }
  cgroups.push(base);
  realBase = base;
  return base;
}

/** A cgroup made by root under `parent` (as dockerd makes a container's scope). */
function rootCgroup(parent: string, name: string): string {
  const d = join(parent, name);
  mkdirSync(d);
  cgroups.push(d);
  return d;
}

/** A subtree delegated to `uid` as systemd delegates user@UID.service: the directory and its process files chowned. */
function delegate(parent: string, uid: number): string {
  const d = rootCgroup(parent, `user@${uid}.service`);
  for (const f of ['', 'cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control'])
    chownSync(join(d, f), uid, uid);
  return d;
}

/**
 * A shell (as `uid`, or root) that root first moves into `start`; on "go" it runs `then` (in
 * its own right, as that user) and says "in", then execs `exec`. Resolves once it said "in".
 */
async function shell(
  start: string,
  then: string,
  exec: string,
  uid?: number,
): Promise<{ p: ChildProcess; lines: AsyncIterator<string> }> {
  const p = spawn('sh', ['-c', `read go; ${then} && echo in && exec ${exec}`], {
    stdio: ['pipe', 'pipe', 'inherit'],
    cwd: '/',
    ...(uid === undefined ? {} : { uid, gid: uid }),
  });
  procs.push(p);
  await once(p, 'spawn');
  writeFileSync(join(start, 'cgroup.procs'), `${p.pid}`);
  p.stdin?.write('go\n');
  const lines = createInterface({ input: p.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  assert.is((await lines.next()).value, 'in');
  return { p, lines };
}

test('real cgroups: a user process in its self-made docker-<id>.scope gets no container:id; a root-made one does', async () => {
  const base = realCgroups();
  if (base === undefined) {
    console.log('  (skipped: no writable cgroup v2 hierarchy here)');
    assert.ok(true);
    return;
  }
  const service = delegate(base, USER);
  const fake = join(service, `docker-${ID}.scope`);
  cgroups.push(fake); // made by the user below; removed with the others
  const user = await shell(service, `mkdir ${fake} && echo $$ > ${fake}/cgroup.procs`, 'sleep 60', USER);
  const pid = user.p.pid as number;
  const cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  assert.is(containerOf(cgroup)?.id, ID); // the kernel names it as the container
  const a = await attest(
    { pid, uid: USER, gid: USER },
    { containers: { docker: dir, podman: null, containerd: null } },
  );
  assert.not.ok([...a.selectors].some((s) => s.startsWith('container:')));
  assert.is(a.containerError?.code, CODE);
  assert.match(a.containerError?.message ?? '', `user@${USER}.service belongs to uid ${USER}`);
  assert.is(a.imageError, undefined); // no image looked up for an id not granted

  const real = rootCgroup(rootCgroup(base, 'system.slice'), `docker-${ID}.scope`);
  const ctr = await shell(real, 'true', 'sleep 60');
  const b = await attest({ pid: ctr.p.pid as number, uid: 0, gid: 0 });
  assert.ok(b.selectors.has(`container:id:${ID}`));
  assert.is(b.containerError, undefined);
});

test('real cgroups, through the server: the self-made scope is refused its container entry, the root-made one served', async () => {
  const base = realCgroups();
  if (base === undefined) {
    console.log('  (skipped: no writable cgroup v2 hierarchy here)');
    assert.ok(true);
    return;
  }
  const h = await harness([{ name: 'ctr', selectors: [`container:id:${ID}`] }]);
  try {
    const client = `${PYTHON} ${join(dirname(fileURLToPath(import.meta.url)), 'workload_client.py')} ${h.stubs} ${h.socket} x509 --max 1`;
    const service = delegate(base, USER + 1);
    const fake = join(service, `docker-${ID}.scope`);
    cgroups.push(fake);
    const user = await shell(service, `mkdir ${fake} && echo $$ > ${fake}/cgroup.procs`, client, USER + 1);
    const refused = JSON.parse((await user.lines.next()).value as string) as {
      error?: string;
      details?: string;
    };
    assert.is(refused.error, 'PERMISSION_DENIED');
    assert.match(refused.details ?? '', /no identity issued/);
    const why = h.logger.lines.find((l) => l.fields.event === 'workload.container_id_untrusted');
    assert.is(why?.level, 'debug');
    assert.is(why?.fields.code, CODE);

    const real = rootCgroup(base, `docker-${ID}.scope`);
    const ctr = await shell(real, 'true', client);
    const served = JSON.parse((await ctr.lines.next()).value as string) as { svids?: { id: string }[] };
    assert.is(served.svids?.[0]?.id, `${h.pki.gateway.id}/workload/ctr`);
  } finally {
    await h.close();
  }
});

test.run();
