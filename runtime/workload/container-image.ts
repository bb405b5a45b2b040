/**
 * The image of a workload's container, read from what the container runtime itself recorded on
 * disk (no daemon API, no socket): the source of the `container:image` and `container:image_id`
 * selectors.
 *
 * - Docker: `<data-root>/containers/<id>/config.v2.json` → `Config.Image` (the reference the
 *   container was created from) and `Image` (the image ID, `sha256:<hex>`); the init pid is
 *   `State.Pid`.
 * - Podman (root, containers/storage): `<graphRoot>/<driver>-containers/containers.json` and
 *   `volatile-containers.json` → the entry whose `id` is the container's: `image` (the image ID)
 *   and `metadata` (libpod's JSON string: `image-name`); the init pid is
 *   `<runRoot>/<driver>-containers/<id>/userdata/pidfile`.
 * - containerd (CRI): `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json` (the OCI
 *   bundle) → annotation `io.kubernetes.cri.image-name`; the init pid is `init.pid` beside it.
 *
 * Nothing the workload controls is trusted. The container id comes from a cgroup only root can
 * have made (container-id.ts; a rootless container's id is never asked about), and the process
 * must also share the mount namespace of the container's init process as the runtime recorded it
 * (`/proc/<pid>/ns/mnt`), which binds the record to this very process.
 * Every file read, and every directory from the configured root down to it, must be owned by
 * root (or the agent's own uid) and not writable by group or others; regular files only, opened
 * without following a final symlink, each with a size limit; parsed records are cached while
 * the file is unchanged (device, inode, size, mtime, ctime; the trust checks run every time). A runtime root or container that is
 * not there means "no image" (undefined); anything found but unreadable, oversized, malformed,
 * unsafe or not bound to the process is `ERR_WORKLOAD_CONTAINER_METADATA`.
 */
import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, readlink, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { WorkloadError } from '../errors.ts';

export type ContainerRuntime = 'docker' | 'podman' | 'containerd';

/** Where each runtime keeps its state; `null` switches a runtime off. */
export interface ContainerRoots {
  /** Docker's data-root. */
  readonly docker: string | null;
  /** Podman's containers/storage `graphRoot` and `runRoot` (root's, never a rootless user's). */
  readonly podman: { readonly graphRoot: string; readonly runRoot: string } | null;
  /** containerd's state directory. */
  readonly containerd: string | null;
}

/** Debian's defaults (docker.io, podman, containerd packages). */
export const DEFAULT_CONTAINER_ROOTS: ContainerRoots = {
  docker: '/var/lib/docker',
  podman: { graphRoot: '/var/lib/containers/storage', runRoot: '/run/containers/storage' },
  containerd: '/run/containerd',
};

export interface ContainerImage {
  readonly runtime: ContainerRuntime;
  /** The image reference the container was created from (`registry/repo:tag` or `…@sha256:…`). */
  readonly image?: string;
  /** The content-addressed image ID, `sha256:<64 hex>`. */
  readonly imageId?: string;
}

/** Size limits of the files read (bytes). */
export const CONTAINER_FILE_LIMITS = {
  dockerConfig: 1 << 20,
  podmanContainers: 8 << 20,
  ociConfig: 1 << 20,
  pidFile: 32,
} as const;

export const IMAGE_REF_RE = /^[A-Za-z0-9][A-Za-z0-9._\-/:@+]{0,511}$/;
export const IMAGE_ID_RE = /^sha256:[0-9a-f]{64}$/;
const ID_RE = /^[0-9a-f]{64}$/;

const bad = (why: string, cause?: unknown): never => {
  throw new WorkloadError('ERR_WORKLOAD_CONTAINER_METADATA', why, cause === undefined ? {} : { cause });
};

const isMissing = (err: unknown): boolean => {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
};

/**
 * What identifies a file's content without reading it: device, inode, size, mtime and ctime. The
 * owner can set mtime back after rewriting the file (utimes); ctime only the kernel sets.
 */
export const fileKey = (st: Stats): string => `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;

const trustedOwner = (uid: number): boolean => uid === 0 || uid === process.geteuid?.();

/**
 * Every directory from `root` down to `file`'s parent: owned by root (or us), not group/other-
 * writable, and no symlink below `root` (the operator's root itself may be one).
 */
async function checkDirs(root: string, file: string): Promise<void> {
  const rel = relative(root, dirname(file));
  if (rel.startsWith('..')) bad(`${file} is not under ${root}`);
  let dir = root;
  for (const part of ['', ...(rel === '' ? [] : rel.split(sep))]) {
    dir = part === '' ? dir : join(dir, part);
    // The configured root may be a symlink (a data-root moved to another partition); below it, not.
    const st = part === '' ? await stat(dir) : await lstat(dir);
    if (!st.isDirectory()) bad(`${dir} is not a directory`);
    if (!trustedOwner(st.uid) || (st.mode & 0o022) !== 0)
      bad(`${dir} is writable by others than root (uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)})`);
  }
}

/** Parsed JSON records by (path, device, inode, size, mtime, ctime): a record re-read only when rewritten. */
const JSON_CACHE_MAX = 16;
const jsonCache = new Map<string, Record<string, unknown> | unknown[]>();

/**
 * Read `file` (under `root`) if it exists: a regular file, not a symlink, owned by root or us, not
 * group/other-writable, at most `limit` bytes. Undefined when it (or a directory on the way) is
 * absent. With `json`, the parsed document (cached while the file is unchanged).
 */
export async function readTrusted(root: string, file: string, limit: number): Promise<string | undefined>;
export async function readTrusted(
  root: string,
  file: string,
  limit: number,
  json: true,
): Promise<Record<string, unknown> | unknown[] | undefined>;
export async function readTrusted(
  root: string,
  file: string,
  limit: number,
  json?: true,
): Promise<string | Record<string, unknown> | unknown[] | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (isMissing(err)) return undefined;
    return bad(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, err);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) bad(`${file} is not a regular file`);
    if (!trustedOwner(st.uid) || (st.mode & 0o022) !== 0)
      bad(`${file} is writable by others than root (uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)})`);
    if (st.size > limit) bad(`${file} is larger than ${limit} bytes`);
    await checkDirs(root, file);
    const key = `${file}\0${fileKey(st)}`;
    const hit = json === true ? jsonCache.get(key) : undefined;
    if (hit !== undefined) {
      jsonCache.delete(key);
      jsonCache.set(key, hit);
      return hit;
    }
    // Sized by fstat, grown (up to the limit) if the file grew since.
    let buf = Buffer.allocUnsafe(Math.min(limit, st.size) + 1);
    let n = 0;
    for (;;) {
      if (n === buf.length) {
        if (n > limit) bad(`${file} is larger than ${limit} bytes`);
        const bigger = Buffer.allocUnsafe(Math.min(limit + 1, buf.length * 2));
        buf.copy(bigger, 0, 0, n);
        buf = bigger;
      }
      const { bytesRead } = await handle.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > limit) bad(`${file} is larger than ${limit} bytes`);
    const text = buf.subarray(0, n).toString('utf8');
    if (json !== true) return text;
    const parsed = parseJson(file, text);
    jsonCache.set(key, parsed);
    if (jsonCache.size > JSON_CACHE_MAX) jsonCache.delete(jsonCache.keys().next().value as string);
    return parsed;
  } finally {
    await handle.close();
  }
}

function parseJson(file: string, text: string): Record<string, unknown> | unknown[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (cause) {
    return bad(`${file}: not JSON`, cause);
  }
  if (v === null || typeof v !== 'object') bad(`${file}: not a JSON object or array`);
  return v as Record<string, unknown>;
}

const obj = (v: unknown): Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

function imageOf(file: string, ref: unknown, id: unknown): { image?: string; imageId?: string } {
  const out: { image?: string; imageId?: string } = {};
  if (ref !== undefined && ref !== '') {
    if (typeof ref !== 'string' || !IMAGE_REF_RE.test(ref)) bad(`${file}: malformed image reference`);
    out.image = ref as string;
  }
  if (id !== undefined && id !== '') {
    const full = typeof id === 'string' && ID_RE.test(id) ? `sha256:${id}` : id;
    if (typeof full !== 'string' || !IMAGE_ID_RE.test(full)) bad(`${file}: malformed image ID`);
    out.imageId = full as string;
  }
  return out;
}

/** The mount namespace of `pid` (`mnt:[4026531841]`). */
async function mountNs(pid: number): Promise<string> {
  try {
    return await readlink(`/proc/${pid}/ns/mnt`);
  } catch (cause) {
    return bad(`cannot read the mount namespace of pid ${pid}`, cause);
  }
}

/** The process `pid` must run inside the container whose init process is `initPid`. */
async function bind(pid: number, initPid: unknown, what: string): Promise<void> {
  if (typeof initPid !== 'number' || !Number.isInteger(initPid) || initPid <= 0)
    bad(`${what}: the runtime records no running init process`);
  const [mine, theirs] = await Promise.all([mountNs(pid), mountNs(initPid as number)]);
  if (mine !== theirs) bad(`pid ${pid} is not inside container ${what} (another mount namespace)`);
}

async function readPid(root: string, file: string): Promise<number | undefined> {
  const text = await readTrusted(root, file, CONTAINER_FILE_LIMITS.pidFile);
  if (text === undefined) return undefined;
  if (!/^\d{1,10}\s*$/.test(text)) bad(`${file}: malformed pid`);
  return Number(text.trim());
}

async function docker(root: string, id: string, pid: number): Promise<ContainerImage | undefined> {
  const file = join(root, 'containers', id, 'config.v2.json');
  const doc = await readTrusted(root, file, CONTAINER_FILE_LIMITS.dockerConfig, true);
  if (doc === undefined) return undefined;
  const c = obj(doc);
  if (c.ID !== id) bad(`${file}: ID does not name container ${id}`);
  await bind(pid, obj(c.State).Pid, `docker ${id.slice(0, 12)}`);
  return { runtime: 'docker', ...imageOf(file, obj(c.Config).Image, c.Image) };
}

async function subdirs(dir: string, suffix: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((d) => d.endsWith(suffix)).sort();
  } catch (err) {
    if (isMissing(err)) return [];
    return bad(`cannot list ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, err);
  }
}

async function podman(
  roots: { graphRoot: string; runRoot: string },
  id: string,
  pid: number,
): Promise<ContainerImage | undefined> {
  for (const store of await subdirs(roots.graphRoot, '-containers')) {
    for (const name of ['containers.json', 'volatile-containers.json']) {
      const file = join(roots.graphRoot, store, name);
      const list = await readTrusted(roots.graphRoot, file, CONTAINER_FILE_LIMITS.podmanContainers, true);
      if (list === undefined) continue;
      if (!Array.isArray(list)) return bad(`${file}: not a JSON array`);
      const entry = list.map(obj).find((e) => e.id === id);
      if (entry === undefined) continue;
      let meta: Record<string, unknown> = {};
      if (typeof entry.metadata === 'string' && entry.metadata !== '') {
        try {
          meta = obj(JSON.parse(entry.metadata));
        } catch (cause) {
          bad(`${file}: container ${id.slice(0, 12)} has malformed metadata`, cause);
        }
      }
      const pidFile = join(roots.runRoot, store, id, 'userdata', 'pidfile');
      await bind(pid, await readPid(roots.runRoot, pidFile), `podman ${id.slice(0, 12)}`);
      return { runtime: 'podman', ...imageOf(file, meta['image-name'], entry.image) };
    }
  }
  return undefined;
}

async function containerd(state: string, id: string, pid: number): Promise<ContainerImage | undefined> {
  const tasks = join(state, 'io.containerd.runtime.v2.task');
  for (const ns of await subdirs(tasks, '')) {
    const file = join(tasks, ns, id, 'config.json');
    const doc = await readTrusted(state, file, CONTAINER_FILE_LIMITS.ociConfig, true);
    if (doc === undefined) continue;
    const annotations = obj(obj(doc).annotations);
    await bind(
      pid,
      await readPid(state, join(tasks, ns, id, 'init.pid')),
      `containerd ${ns}/${id.slice(0, 12)}`,
    );
    return {
      runtime: 'containerd',
      ...imageOf(file, annotations['io.kubernetes.cri.image-name'], undefined),
    };
  }
  return undefined;
}

/**
 * The image of container `id` that process `pid` runs in, from the runtime the cgroup path named
 * (`hint`) or else each configured runtime in turn; undefined when no runtime knows the container.
 */
export async function containerImage(
  id: string,
  pid: number,
  roots: ContainerRoots,
  hint?: ContainerRuntime,
): Promise<ContainerImage | undefined> {
  if (!ID_RE.test(id)) return bad(`malformed container id`);
  const order: ContainerRuntime[] = hint === undefined ? ['docker', 'podman', 'containerd'] : [hint];
  for (const rt of order) {
    const found =
      rt === 'docker'
        ? roots.docker === null
          ? undefined
          : await docker(roots.docker, id, pid)
        : rt === 'podman'
          ? roots.podman === null
            ? undefined
            : await podman(roots.podman, id, pid)
          : roots.containerd === null
            ? undefined
            : await containerd(roots.containerd, id, pid);
    if (found !== undefined) return found;
  }
  return undefined;
}
