/**
 * `container:image` / `container:image_id`: the image a workload's container runs, read from the
 * files Docker, Podman and containerd write, laid out in temp dirs exactly as the runtimes lay
 * them out (this machine has no container engine, so no runtime writes them here; the layouts and
 * field names are those of dockerd's `containers/<id>/config.v2.json`, containers/storage's
 * `overlay-containers/containers.json` with libpod's metadata string and the run root's `pidfile`,
 * and containerd's v2 task bundle `config.json` + `init.pid`). The "container's init process" is
 * a real process: a `sleep` in our mount namespace, or one in a new mount namespace (`unshare`)
 * for the process-not-in-that-container case. Refusals assert `ERR_WORKLOAD_CONTAINER_METADATA`.
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import type { AttestOptions } from '../../../runtime/workload/attest.ts';
import { attest } from '../../../runtime/workload/attest.ts';
import { containerOf } from '../../../runtime/workload/container-id.ts';
import { type ContainerRoots, containerImage } from '../../../runtime/workload/container-image.ts';
import { parseEntries } from '../../../runtime/workload/entries.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { rejects } from '../../helpers/rejects.ts';
import { harness } from './harness.ts';

const ID = '3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e';
const IMAGE_ID = `sha256:${'9a'.repeat(32)}`;
const CODE = 'ERR_WORKLOAD_CONTAINER_METADATA';

let dir: string;
let roots: ContainerRoots;
const procs: ChildProcess[] = [];

function sleeper(args: string[] = []): number {
  const p = spawn(args[0] ?? 'sleep', args.length > 0 ? [...args.slice(1)] : ['60'], { stdio: 'ignore' });
  procs.push(p);
  return p.pid as number;
}

/** Dockerd's config.v2.json for a running container (fields as dockerd writes them, trimmed). */
function dockerConfig(id: string, pid: number, image = 'registry.example/modbus-adapter:1.4.2'): string {
  return JSON.stringify({
    StreamConfig: {},
    State: {
      Running: true,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      RemovalInProgress: false,
      Dead: false,
      Pid: pid,
      ExitCode: 0,
      Error: '',
      StartedAt: '2026-12-06T22:00:00.000000000Z',
      FinishedAt: '0001-01-01T00:00:00Z',
      Health: null,
    },
    ID: id,
    Created: '2026-12-06T21:59:59.000000000Z',
    Managed: false,
    Path: '/usr/bin/modbus-adapter',
    Args: [],
    Config: {
      Hostname: id.slice(0, 12),
      Domainname: '',
      User: '1001',
      AttachStdin: false,
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['/usr/bin/modbus-adapter'],
      Image: image,
      Volumes: null,
      WorkingDir: '',
      Entrypoint: null,
      OnBuild: null,
      Labels: {},
    },
    Image: IMAGE_ID,
    ImageManifest: null,
    NetworkSettings: { Bridge: '', SandboxID: 'f'.repeat(64), Networks: {} },
    LogPath: `/var/lib/docker/containers/${id}/${id}-json.log`,
    Name: '/modbus',
    Driver: 'overlay2',
    OS: 'linux',
    RestartCount: 0,
    HasBeenStartedBefore: true,
    HasBeenManuallyStopped: false,
    MountPoints: {},
    AppArmorProfile: 'docker-default',
    HostnamePath: `/var/lib/docker/containers/${id}/hostname`,
    HostsPath: `/var/lib/docker/containers/${id}/hosts`,
    ShmPath: '',
    ResolvConfPath: `/var/lib/docker/containers/${id}/resolv.conf`,
    LocalLogCacheMeta: { HaveNotifyEnabled: false },
  });
}

function writeDocker(root: string, content: string, id = ID): string {
  const d = join(root, 'containers', id);
  mkdirSync(d, { recursive: true, mode: 0o710 });
  const f = join(d, 'config.v2.json');
  writeFileSync(f, content, { mode: 0o600 });
  return f;
}

/** containers/storage's containers.json (several containers) and the run root's pidfile. */
function writePodman(graphRoot: string, runRoot: string, pid: number): void {
  const store = join(graphRoot, 'overlay-containers');
  mkdirSync(store, { recursive: true, mode: 0o700 });
  const entry = (id: string, name: string, imageName: string, image: string) => ({
    id,
    names: [name],
    image,
    layer: 'c'.repeat(64),
    metadata: JSON.stringify({
      'image-name': imageName,
      'image-id': image,
      name,
      'created-at': 1765058399,
      mountlabel: '',
    }),
    'big-data-names': ['volatile-config'],
    'big-data-sizes': { 'volatile-config': 4242 },
    'big-data-digests': { 'volatile-config': `sha256:${'d'.repeat(64)}` },
    created: '2026-12-06T21:59:59.123456789Z',
    flags: { MountLabel: '', ProcessLabel: '' },
  });
  writeFileSync(
    join(store, 'containers.json'),
    JSON.stringify([
      entry('e'.repeat(64), 'other', 'docker.io/library/alpine:3.20', 'b'.repeat(64)),
      entry(ID, 'opcua', 'quay.io/vendor/opcua-bridge:2.0', '9a'.repeat(32)),
    ]),
    { mode: 0o600 },
  );
  const userdata = join(runRoot, 'overlay-containers', ID, 'userdata');
  mkdirSync(userdata, { recursive: true, mode: 0o700 });
  writeFileSync(join(userdata, 'pidfile'), `${pid}`, { mode: 0o644 });
}

/** containerd's v2 task bundle: the OCI config.json with the CRI annotations, and init.pid. */
function writeContainerd(state: string, pid: number): void {
  const bundle = join(state, 'io.containerd.runtime.v2.task', 'k8s.io', ID);
  mkdirSync(bundle, { recursive: true, mode: 0o700 });
  writeFileSync(
    join(bundle, 'config.json'),
    JSON.stringify({
      ociVersion: '1.1.0',
      process: { user: { uid: 65532, gid: 65532 }, args: ['/app'], cwd: '/' },
      root: { path: 'rootfs' },
      annotations: {
        'io.kubernetes.cri.container-type': 'container',
        'io.kubernetes.cri.container-name': 'app',
        'io.kubernetes.cri.image-name': 'ghcr.io/vendor/app:v3',
        'io.kubernetes.cri.sandbox-id': 'a'.repeat(64),
        'io.kubernetes.cri.sandbox-namespace': 'default',
      },
      linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] },
    }),
    { mode: 0o644 },
  );
  writeFileSync(join(bundle, 'init.pid'), `${pid}`, { mode: 0o644 });
}

test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgeward-ctr-'));
  roots = {
    docker: join(dir, 'docker'),
    podman: { graphRoot: join(dir, 'storage'), runRoot: join(dir, 'run-storage') },
    containerd: join(dir, 'containerd'),
  };
});

test.after(async () => {
  for (const p of procs) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('cgroup paths name the runtime: docker, podman (libpod), containerd; others only the id', () => {
  assert.equal(containerOf(`0::/system.slice/docker-${ID}.scope\n`), { id: ID, runtime: 'docker' });
  assert.equal(containerOf(`12:memory:/docker/${ID}\n`), { id: ID, runtime: 'docker' });
  assert.equal(containerOf(`0::/machine.slice/libpod-${ID}.scope/container\n`), {
    id: ID,
    runtime: 'podman',
  });
  assert.equal(containerOf(`0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-${ID}.scope\n`), {
    id: ID,
    runtime: 'containerd',
  });
  assert.equal(containerOf(`0::/kubepods/besteffort/pod1/crio-${ID}.scope\n`), { id: ID });
});

test('docker: Config.Image and the image ID for a process inside the container (same mount namespace)', async () => {
  const init = sleeper();
  const workload = sleeper();
  writeDocker(roots.docker as string, dockerConfig(ID, init));
  assert.equal(await containerImage(ID, workload, roots, 'docker'), {
    runtime: 'docker',
    image: 'registry.example/modbus-adapter:1.4.2',
    imageId: IMAGE_ID,
  });
  // No runtime named by the cgroup path: each configured runtime is asked in turn.
  assert.equal((await containerImage(ID, workload, roots))?.runtime, 'docker');
  // A data-root moved elsewhere behind a symlink is followed; a symlinked directory below it is not.
  const link = join(dir, 'docker-link');
  symlinkSync(roots.docker as string, link);
  assert.equal(
    (await containerImage(ID, workload, { ...roots, docker: link }, 'docker'))?.image,
    'registry.example/modbus-adapter:1.4.2',
  );
  const moved = join(dir, 'docker-moved');
  mkdirSync(moved, { mode: 0o700 });
  symlinkSync(join(roots.docker as string, 'containers'), join(moved, 'containers'));
  assert.match(
    (await rejects(() => containerImage(ID, workload, { ...roots, docker: moved }, 'docker'), CODE)).message,
    /is not a directory/,
  );
});

test('podman: the containers.json entry (image-name from libpod metadata, image ID); containerd: the CRI annotation', async () => {
  const init = sleeper();
  writePodman(roots.podman?.graphRoot as string, roots.podman?.runRoot as string, init);
  assert.equal(await containerImage(ID, init, roots, 'podman'), {
    runtime: 'podman',
    image: 'quay.io/vendor/opcua-bridge:2.0',
    imageId: IMAGE_ID,
  });
  writeContainerd(roots.containerd as string, init);
  assert.equal(await containerImage(ID, init, roots, 'containerd'), {
    runtime: 'containerd',
    image: 'ghcr.io/vendor/app:v3',
  });
});

test('absent: no such container, a runtime root that does not exist, or a runtime switched off → no image', async () => {
  const other = 'f0'.repeat(32);
  assert.is(await containerImage(other, process.pid, roots), undefined);
  const none: ContainerRoots = { docker: join(dir, 'nope'), podman: null, containerd: null };
  assert.is(await containerImage(ID, process.pid, none), undefined);
  assert.is(await containerImage(ID, process.pid, { ...roots, docker: null }, 'docker'), undefined);
});

test('a process outside the container (another mount namespace) does not get its image', async () => {
  const unshare = spawnSync('unshare', ['-rm', 'true']).status === 0 ? ['unshare', '-rm'] : ['unshare', '-m'];
  // unshare execs the shell in place once the namespace exists; the shell says so (the sentinel),
  // then execs sleep in place: the same pid, in the new mount namespace from the first line on.
  const p = spawn(unshare[0] as string, [...unshare.slice(1), 'sh', '-c', 'echo in; exec sleep 60'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  procs.push(p);
  await once(p.stdout as NonNullable<typeof p.stdout>, 'data');
  const outsider = p.pid as number;
  // The fake "container" records the outsider's pid; a host process claims it through its cgroup.
  const r = join(dir, 'docker-ns');
  writeDocker(r, dockerConfig(ID, outsider));
  const e = await rejects(() => containerImage(ID, process.pid, { ...roots, docker: r }, 'docker'), CODE);
  assert.match(e.message, /another mount namespace/);
  writeDocker(r, dockerConfig(ID, 0));
  const stopped = await rejects(
    () => containerImage(ID, process.pid, { ...roots, docker: r }, 'docker'),
    CODE,
  );
  assert.match(stopped.message, /no running init process/);
});

test('untrusted records are refused: writable by others, a group-writable directory, another owner, a symlink', async () => {
  const r = join(dir, 'docker-trust');
  const f = writeDocker(r, dockerConfig(ID, process.pid));
  const withRoot = { ...roots, docker: r };
  chmodSync(f, 0o666);
  assert.match(
    (await rejects(() => containerImage(ID, process.pid, withRoot, 'docker'), CODE)).message,
    /writable/,
  );
  chmodSync(f, 0o600);
  chmodSync(join(r, 'containers'), 0o775);
  assert.match(
    (await rejects(() => containerImage(ID, process.pid, withRoot, 'docker'), CODE)).message,
    /containers is writable/,
  );
  chmodSync(join(r, 'containers'), 0o700);
  if (process.geteuid?.() === 0) {
    chownSync(f, 4242, 4242);
    assert.match(
      (await rejects(() => containerImage(ID, process.pid, withRoot, 'docker'), CODE)).message,
      /uid 4242/,
    );
    chownSync(f, 0, 0);
  }
  assert.equal(
    (await containerImage(ID, process.pid, withRoot, 'docker'))?.image,
    'registry.example/modbus-adapter:1.4.2',
  );
  rmSync(f);
  const elsewhere = join(dir, 'planted.json');
  writeFileSync(elsewhere, dockerConfig(ID, process.pid), { mode: 0o600 });
  symlinkSync(elsewhere, f);
  await rejects(() => containerImage(ID, process.pid, withRoot, 'docker'), CODE);
});

test('malformed or oversized records are refused with the file named', async () => {
  const r = join(dir, 'docker-bad');
  const withRoot = { ...roots, docker: r };
  const f = writeDocker(r, '{"ID": "truncated');
  assert.match(
    (await rejects(() => containerImage(ID, process.pid, withRoot, 'docker'), CODE)).message,
    /config\.v2\.json: not JSON/,
  );
  writeDocker(r, dockerConfig('ab'.repeat(32), process.pid));
  assert.match(
    (await rejects(() => containerImage(ID, process.pid, withRoot, 'docker'), CODE)).message,
    /ID does not name/,
  );
  writeDocker(r, dockerConfig(ID, process.pid, 'evil image\nname'));
  assert.match(
    (await rejects(() => containerImage(ID, process.pid, withRoot, 'docker'), CODE)).message,
    /malformed image reference/,
  );
  writeFileSync(f, `{"ID":"${ID}","pad":"${'x'.repeat(1 << 20)}"}`);
  assert.match(
    (await rejects(() => containerImage(ID, process.pid, withRoot, 'docker'), CODE)).message,
    /larger than 1048576 bytes/,
  );
  const p = join(dir, 'podman-bad');
  mkdirSync(join(p, 'overlay-containers'), { recursive: true });
  writeFileSync(join(p, 'overlay-containers', 'containers.json'), '{"id":"not a list"}');
  const pr = { ...roots, podman: { graphRoot: p, runRoot: join(dir, 'podman-bad-run') } };
  assert.match(
    (await rejects(() => containerImage(ID, process.pid, pr, 'podman'), CODE)).message,
    /not a JSON array/,
  );
});

test('attest: image selectors only when asked for; a host process has none and no error', async () => {
  const a = await attest(
    { pid: process.pid, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 },
    { containers: roots },
  );
  assert.not.ok([...a.selectors].some((s) => s.startsWith('container:')));
  assert.is(a.imageError, undefined);
});

test('entries: container:image and container:image_id validated; workload check names the line', async () => {
  const entries = parseEntries(
    `version: 1\nentries:\n  - name: modbus\n    selectors: ["container:image:registry.example/modbus-adapter:1.4.2", "container:image_id:${IMAGE_ID}"]\n`,
  );
  assert.is(entries[0]?.selectors.length, 2);
  const bad = join(dir, 'bad-image.yaml');
  writeFileSync(
    bad,
    [
      'version: 1', // 1
      'entries:', // 2
      '  - name: a', // 3
      '    selectors:', // 4
      '      - "container:image:has space"', // 5
      '      - "container:image_id:sha256:abc"', // 6
      '      - "container:image_id:9a9a"', // 7
      '',
    ].join('\n'),
  );
  const t = captureIo();
  assert.is(await main(['workload', 'check', bad], t), 1);
  assert.equal(t.stderr, [
    `${bad}:5: entries[0].selectors[0]: malformed value for container:image: "has space"`,
    `${bad}:6: entries[0].selectors[1]: malformed value for container:image_id: "sha256:abc"`,
    `${bad}:7: entries[0].selectors[2]: malformed value for container:image_id: "9a9a"`,
  ]);
});

test('the server reads the cgroup only for container: entries, the runtime records only for image entries', async () => {
  const seen: AttestOptions[] = [];
  const uid = process.getuid?.() ?? 0;
  const h = await harness([{ name: 'svc', selectors: [`unix:uid:${uid}`] }], {
    attest: async (cred, options) => {
      seen.push(options);
      return attest(cred, options);
    },
  });
  try {
    const c = h.client(['x509']);
    assert.is((await c.next()).svids?.length, 1);
    assert.equal(seen.at(-1), { container: false });
    await h.server.setEntries([
      { name: 'svc', selectors: [`unix:uid:${uid}`] },
      { name: 'ctr', selectors: [`container:id:${ID}`] },
    ]);
    const d = h.client(['x509']);
    assert.is((await d.next()).svids?.length, 1);
    assert.equal(seen.at(-1), { container: true });
    await h.server.setEntries([{ name: 'img', selectors: ['container:image:registry.example/a:1'] }]);
    const e = h.client(['x509']);
    assert.is((await e.next()).error, 'PERMISSION_DENIED');
    assert.ok(seen.at(-1)?.container === true && seen.at(-1)?.containers?.docker === '/var/lib/docker');
  } finally {
    await h.close();
  }
});

test.run();
