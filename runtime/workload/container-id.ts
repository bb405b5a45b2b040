/**
 * The container a process runs in, from its cgroup: the source of the `container:id` selector.
 *
 * /proc/<pid>/cgroup names the process's cgroup in each hierarchy (`0::/path` for cgroup v2,
 * `<n>:<controllers>:/path` for v1); docker, containerd (CRI), podman and cri-o name a
 * container's cgroup after its 64-hex id (`docker-<id>.scope`, `/docker/<id>`, …). A name proves
 * nothing by itself: with systemd every user gets a delegated subtree (`user@<uid>.service`,
 * chowned to that user) in which they may create a cgroup of any name and move their own
 * processes into it. So an id counts only when the cgroup directory naming it cannot have been
 * made by the caller, a fact the kernel keeps: a cgroup directory belongs to the fsuid of the
 * process that created it, delegation is a chown, and only root can chown to another uid (a
 * user namespace's root only to its own mapped uids). The rule: every directory from the cgroup
 * mount root (`/sys/fs/cgroup`) down to the one naming the id is owned by uid 0 and writable by
 * neither group nor others (group- or world-writable would let others create cgroups there).
 * Deeper directories (a container's own sub-cgroups) are not checked: the process is inside the
 * container either way.
 *
 * Rootless containers (rootless podman or docker, under the user's own delegated subtree) thus
 * give no `container:id`: their id is chosen by that user and proves no more than `unix:uid`.
 * Such a refusal is not an attestation failure: the selector is missing and the reason is an
 * `ERR_WORKLOAD_CONTAINER_UNTRUSTED` error returned beside the selectors.
 *
 * Where a line's directory is: cgroup v2 at the root when it is a cgroup2 mount (has
 * `cgroup.controllers`), else at `<root>/unified` (systemd's hybrid layout); a v1 hierarchy at
 * `<root>/<controllers>` (`cpu,cpuacct`, `name=` dropped: `systemd`) or, failing that, at
 * `<root>/<controller>` for one of its controllers. A path outside the agent's cgroup namespace
 * (`/..`) or with empty or dot components is refused. The agent must see the hierarchy at its
 * root, as a systemd service in the host's cgroup namespace does.
 *
 * Cost: one lstat per directory on the way (kernfs answers from memory, without the cgroup locks
 * the cgroup file itself waits on), only when the cgroup names a container at all.
 */
import { lstatSync, type Stats, statSync } from 'node:fs';
import { join } from 'node:path';
import { WorkloadError } from '../errors.ts';
import type { ContainerRuntime } from './container-image.ts';

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';

export interface CgroupContainer {
  readonly id: string;
  /** The runtime the cgroup path names, if any (podman, docker, containerd; cri-o names none). */
  readonly runtime?: ContainerRuntime;
}

/** A container a cgroup line names (not yet trusted). */
interface Named extends CgroupContainer {
  /** The line's hierarchy field: '' for cgroup v2, else its controllers (`cpu,cpuacct`, `name=systemd`). */
  readonly hierarchy: string;
  /** The cgroup path of the directory whose name holds the id. */
  readonly dir: string;
}

const CONTAINER_RE =
  /(?:^|[/:-])(docker-|libpod-|cri-containerd-|crio-|containerd-)?([0-9a-f]{64})(?:\.scope)?(?:\/|$)/;

const RUNTIME_OF: Record<string, ContainerRuntime | undefined> = {
  'docker-': 'docker',
  'libpod-': 'podman',
  'cri-containerd-': 'containerd',
  'containerd-': 'containerd',
};

/** Every container a /proc/<pid>/cgroup text names, one per line that names one, in line order. */
function named(cgroup: string): Named[] {
  const out: Named[] = [];
  for (const line of cgroup.split('\n')) {
    const a = line.indexOf(':');
    const b = a < 0 ? -1 : line.indexOf(':', a + 1);
    if (b < 0) continue;
    const path = line.slice(b + 1);
    const m = CONTAINER_RE.exec(path);
    if (m === null) continue;
    const id = m[2] as string;
    const end = path.indexOf('/', path.indexOf(id, m.index) + id.length);
    const dir = end < 0 ? path : path.slice(0, end);
    const runtime =
      RUNTIME_OF[m[1] ?? ''] ??
      (/(^|\/)docker\//.test(path) ? 'docker' : /(^|\/)libpod_parent\//.test(path) ? 'podman' : undefined);
    const hierarchy = line.slice(a + 1, b);
    out.push(runtime === undefined ? { id, hierarchy, dir } : { id, runtime, hierarchy, dir });
  }
  return out;
}

/**
 * The container a /proc/<pid>/cgroup text names, by name alone (the first line naming one). Not
 * a proof: `trustedContainerOf` is what attestation uses.
 */
export function containerOf(cgroup: string): CgroupContainer | undefined {
  const n = named(cgroup)[0];
  return n === undefined ? undefined : container(n);
}

/** The id and runtime of a named container, without where its name was found. */
const container = (n: Named): CgroupContainer =>
  n.runtime === undefined ? { id: n.id } : { id: n.id, runtime: n.runtime };

const untrusted = (id: string, why: string, cause?: unknown): WorkloadError =>
  new WorkloadError(
    'ERR_WORKLOAD_CONTAINER_UNTRUSTED',
    `no container:id for ${id.slice(0, 12)}: ${why}`,
    cause === undefined ? {} : { cause },
  );

/** Where each (root, hierarchy) was found mounted (mounts do not move while the agent runs). */
const bases = new Map<string, string>();

const exists = (path: string): boolean => {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
};

/** The directory where the hierarchy of a cgroup line is mounted, or undefined when none is found. */
function hierarchyDir(root: string, hierarchy: string): string | undefined {
  const key = `${root}\0${hierarchy}`;
  const known = bases.get(key);
  if (known !== undefined) return known;
  let base: string | undefined;
  if (hierarchy === '') {
    if (exists(join(root, 'cgroup.controllers'))) base = root;
    else if (exists(join(root, 'unified', 'cgroup.controllers'))) base = join(root, 'unified');
  } else {
    const names = hierarchy.split(',').map((c) => c.replace(/^name=/, ''));
    if (names.some((n) => n === '' || n === '.' || n === '..' || n.includes('/'))) return undefined;
    base = [names.join(','), ...names].map((n) => join(root, n)).find(exists);
  }
  if (base !== undefined) bases.set(key, base);
  return base;
}

const modeOf = (st: Stats): string => (st.mode & 0o7777).toString(8);

/** Undefined when the container named by `n` is backed by root-made cgroup directories; else why not. */
function check(root: string, n: Named): WorkloadError | undefined {
  const parts = n.dir.split('/');
  if (parts[0] !== '' || parts.slice(1).some((p) => p === '' || p === '.' || p === '..'))
    return untrusted(n.id, `cgroup path ${n.dir} is not a plain path below the agent's cgroup namespace`);
  const base = hierarchyDir(root, n.hierarchy);
  if (base === undefined)
    return untrusted(n.id, `no ${n.hierarchy === '' ? 'cgroup v2' : n.hierarchy} hierarchy under ${root}`);
  const dirs = base === root ? [root] : [root, base];
  let dir = base;
  for (const p of parts.slice(1)) {
    dir = join(dir, p);
    dirs.push(dir);
  }
  for (const [i, d] of dirs.entries()) {
    let st: Stats;
    try {
      // The mount root and a v1 hierarchy's directory may be symlinks (`cpu` → `cpu,cpuacct`); cgroups are not.
      st = i < (base === root ? 1 : 2) ? statSync(d) : lstatSync(d);
    } catch (cause) {
      return untrusted(n.id, `cannot check ${d}: ${(cause as NodeJS.ErrnoException).code ?? 'error'}`, cause);
    }
    if (!st.isDirectory()) return untrusted(n.id, `${d} is not a directory`);
    if (st.uid !== 0)
      return untrusted(
        n.id,
        `${d} belongs to uid ${st.uid} (a cgroup subtree delegated to that user, who may name its cgroups at will, as rootless containers do)`,
      );
    if ((st.mode & 0o022) !== 0)
      return untrusted(n.id, `${d} is writable by group or others (mode ${modeOf(st)})`);
  }
  return undefined;
}

/**
 * The container a /proc/<pid>/cgroup text names whose cgroup only root can have made (the first
 * such line), or, when the text names containers but none passes, the reason for the first.
 * `{}` when it names none.
 */
export function trustedContainerOf(
  cgroup: string,
  root: string = DEFAULT_CGROUP_ROOT,
): { container?: CgroupContainer; error?: WorkloadError } {
  let first: WorkloadError | undefined;
  for (const n of named(cgroup)) {
    const error = check(root, n);
    if (error === undefined) return { container: container(n) };
    first ??= error;
  }
  return first === undefined ? {} : { error: first };
}
