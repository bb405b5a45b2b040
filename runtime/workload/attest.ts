/**
 * Workload attestation from the kernel: given the SO_PEERCRED of a connection, read
 * /proc/<pid> and produce the workload's selectors. Nothing the workload says is used.
 *
 * Selectors (type:key:value, as in SPIRE):
 * - `unix:uid:<n>`, `unix:gid:<n>` (the credentials the kernel recorded at connect), `unix:user:<name>`,
 *   `unix:group:<name>` (from /etc/passwd, /etc/group when the id has a name),
 *   `unix:supplementary_gid:<n>` per supplementary group;
 * - `unix:path:<exe path>`, `unix:sha256:<hex>` (the executable the process runs, read through
 *   /proc/<pid>/exe so a replaced or deleted file on disk cannot lie);
 * - `container:id:<64 hex>` when /proc/<pid>/cgroup names a docker, containerd/CRI, podman or cri-o
 *   container in a cgroup only root can have made (container-id.ts: every directory from the
 *   cgroup root down to it owned by uid 0, not group/other-writable). A cgroup in a subtree
 *   delegated to a user (rootless containers) gives none, its id being that user's choice, and
 *   `containerError` says why (`ERR_WORKLOAD_CONTAINER_UNTRUSTED`);
 * - `container:image:<reference>`, `container:image_id:sha256:<hex>` when asked for (`containers`
 *   roots given: the server asks only when an entry uses them) and the runtime recorded them on disk
 *   (container-image.ts, which also checks the process is inside that container). A runtime whose
 *   records cannot be trusted or read gives no image selectors and `imageError` says why.
 *
 * Privilege: /proc/<pid>/stat, status and cgroup are world-readable, but the exe link (path, hash)
 * passes the kernel's ptrace access check (PTRACE_MODE_READ_FSCREDS): an agent not running as root
 * can attest another uid's process only with CAP_SYS_PTRACE (the shipped unit grants it), and a
 * hidepid /proc (systemd's ProtectProc=) hides such processes entirely. Either way the answer is
 * `ERR_WORKLOAD_ATTESTATION_DENIED` (EACCES/EPERM, or ENOENT for a process that kill(pid, 0) shows
 * alive), never mistaken for a process that is gone (`ERR_WORKLOAD_ATTESTATION`).
 *
 * Pid reuse (as SPIRE's peer tracker): the process's start time and real/effective uid are read
 * before and after everything else and must be unchanged, and the uid must be the one the kernel
 * recorded at connect; otherwise `ERR_WORKLOAD_ATTESTATION`. The server also re-checks the start
 * time on every later call of the connection (`stillSame`).
 *
 * Cost: /proc/<pid>/stat, status and the exe link are read synchronously (procfs answers them
 * from memory in tens of µs; a thread-pool round trip per file cost more than the read), the
 * cgroup file asynchronously and only when needed (`AttestOptions.container`; when it names a
 * container, one lstat per cgroup directory on the way), /etc/passwd and /etc/group are parsed once per change
 * (inode, size, mtime, ctime), and the executable's hash is kept in an LRU of 256 keyed by
 * (device, inode, size, mtime, ctime), so a known executable costs one stat.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  openSync,
  readFileSync,
  readlinkSync,
  readSync,
  statSync,
} from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { type EdgewardError, isEdgewardError } from '../core/error.ts';
import { WorkloadError } from '../errors.ts';
import { type CgroupContainer, trustedContainerOf } from './container-id.ts';
import { type ContainerRoots, containerImage, fileKey } from './container-image.ts';
import type { PeerCred } from './peercred.ts';

export interface ProcessFacts {
  readonly pid: number;
  readonly startTime: string;
  readonly uid: number;
}

export interface Attestation {
  readonly cred: PeerCred;
  readonly facts: ProcessFacts;
  readonly selectors: ReadonlySet<string>;
  /** Why the container's image selectors are missing although they were asked for. */
  readonly imageError?: EdgewardError;
  /** Why `container:id` is missing although the cgroup names a container (`ERR_WORKLOAD_CONTAINER_UNTRUSTED`). */
  readonly containerError?: EdgewardError;
}

export interface AttestOptions {
  /**
   * Read /proc/<pid>/cgroup for `container:id` (default true). The server reads it only when an
   * entry uses a `container:` selector: the kernel answers it under the cgroup locks, which a
   * machine busy forking holds for milliseconds (p99 14 ms measured here, 0.03 ms typical).
   */
  readonly container?: boolean;
  /** Read the container image from these runtime roots (undefined: no image selectors). */
  readonly containers?: ContainerRoots;
  /** Where the cgroup hierarchies are mounted (default `/sys/fs/cgroup`; tests build layouts elsewhere). */
  readonly cgroupRoot?: string;
}

const fail = (pid: number, why: string, cause?: unknown): never => {
  throw new WorkloadError('ERR_WORKLOAD_ATTESTATION', `pid ${pid}: ${why}`, { cause });
};

const errnoOf = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | null)?.code;

/** True when `pid` exists although this process may not see or signal it (kill(pid, 0) = EPERM). */
function aliveButForeign(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return errnoOf(err) === 'EPERM';
  }
}

/**
 * A failed /proc read: `ERR_WORKLOAD_ATTESTATION_DENIED` when the kernel refused it (EACCES/EPERM:
 * the ptrace access check or file permissions) or hid a live process (ENOENT under hidepid),
 * else `ERR_WORKLOAD_ATTESTATION` (the process is gone, or /proc is malformed).
 */
function procFailure(pid: number, what: string, cause: unknown): never {
  const errno = errnoOf(cause);
  if (errno === 'EACCES' || errno === 'EPERM')
    throw new WorkloadError(
      'ERR_WORKLOAD_ATTESTATION_DENIED',
      `pid ${pid}: ${what}: ${errno} (the agent, uid ${process.getuid?.()}, may not read this process: it needs CAP_SYS_PTRACE, and read access to the executable)`,
      { cause },
    );
  if (errno === 'ENOENT' && aliveButForeign(pid))
    throw new WorkloadError(
      'ERR_WORKLOAD_ATTESTATION_DENIED',
      `pid ${pid}: ${what}: the process runs but /proc hides it from the agent (hidepid / ProtectProc=; the agent needs CAP_SYS_PTRACE)`,
      { cause },
    );
  return fail(pid, what, cause);
}

/**
 * One reused buffer for the small /proc files read on every call (stat, status: well under 4 KiB;
 * a larger file is read on in growing steps). readFileSync on procfs (size 0) allocates a fresh
 * 8 KiB buffer and a copy per read: with the unit's 1 MiB semi-space that garbage alone was a
 * good part of the scavenges landing in connections.
 */
let procBuf = Buffer.allocUnsafe(4096);

function readProc(pid: number, file: string): string {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/${file}`, 'r');
  } catch (cause) {
    return procFailure(pid, `cannot read /proc/${pid}/${file}`, cause);
  }
  try {
    let len = 0;
    for (;;) {
      if (len === procBuf.length) {
        const bigger = Buffer.allocUnsafe(procBuf.length * 2);
        procBuf.copy(bigger);
        procBuf = bigger;
      }
      const n = readSync(fd, procBuf, len, procBuf.length - len, null);
      if (n === 0) break;
      len += n;
    }
    return procBuf.toString('latin1', 0, len);
  } catch (cause) {
    return procFailure(pid, `cannot read /proc/${pid}/${file}`, cause);
  } finally {
    closeSync(fd);
  }
}

async function readProcAsync(pid: number, file: string): Promise<string> {
  try {
    return await readFile(`/proc/${pid}/${file}`, 'utf8');
  } catch (cause) {
    return procFailure(pid, `cannot read /proc/${pid}/${file}`, cause);
  }
}

/** Start time (clock ticks since boot, field 22 of /proc/<pid>/stat), effective uid, gids and groups. */
function factsNow(pid: number): ProcessFacts & { gids: number[]; groups: number[] } {
  const stat = readProc(pid, 'stat');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const startTime = fields[19]; // field 22 overall: 2 fields precede `state`
  if (startTime === undefined || !/^\d+$/.test(startTime)) return fail(pid, 'malformed stat');
  const status = readProc(pid, 'status');
  const ids = (key: string): number[] => {
    const at = status.indexOf(`\n${key}:`);
    if (at < 0) return [];
    const end = status.indexOf('\n', at + 1);
    return status
      .slice(at + key.length + 2, end < 0 ? undefined : end)
      .trim()
      .split(/\s+/)
      .filter((s) => s !== '')
      .map(Number);
  };
  const uids = ids('Uid');
  if (uids.length < 2) return fail(pid, 'malformed status');
  return { pid, startTime, uid: uids[1] as number, gids: ids('Gid'), groups: ids('Groups') };
}

const CAP_SYS_PTRACE = 19n;

/** True when this process may read /proc/<pid>/exe of other users' processes (root, or CAP_SYS_PTRACE). */
export function canAttestOtherUsers(): boolean {
  if (process.geteuid?.() === 0) return true;
  try {
    const m = /\nCapEff:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'));
    return m !== null && ((BigInt(`0x${m[1]}`) >> CAP_SYS_PTRACE) & 1n) === 1n;
  } catch {
    return false;
  }
}

/** True when `pid` still runs the process attested (same start time, same effective uid). */
export async function stillSame(facts: ProcessFacts): Promise<boolean> {
  try {
    const now = factsNow(facts.pid);
    return now.startTime === facts.startTime && now.uid === facts.uid;
  } catch {
    return false;
  }
}

const HASH_CACHE_MAX = 256;
const hashCache = new Map<string, string>();

function remember(key: string, hex: string): void {
  hashCache.delete(key);
  hashCache.set(key, hex);
  if (hashCache.size > HASH_CACHE_MAX) hashCache.delete(hashCache.keys().next().value as string);
}

/** Hashes being computed, by file key: concurrent first calls of one executable share one read. */
const hashing = new Map<string, Promise<string>>();

/**
 * SHA-256 of the executable the process runs, cached (LRU) per (device, inode, size, mtime, ctime).
 * A first call reads the whole file (a Node binary is ~100 MB): calls for the same file while it
 * is read wait for that one read instead of each reading it again.
 */
async function exeHash(pid: number): Promise<string> {
  let key: string;
  try {
    key = fileKey(statSync(`/proc/${pid}/exe`));
  } catch (cause) {
    return procFailure(pid, 'cannot stat the executable', cause);
  }
  const hit = hashCache.get(key);
  if (hit !== undefined) {
    remember(key, hit);
    return hit;
  }
  const running = hashing.get(key);
  // Another pid's read failing (that process gone) says nothing of this one: it reads for itself.
  if (running !== undefined) return running.catch(() => readExeHash(pid));
  const read = readExeHash(pid).finally(() => hashing.delete(key));
  hashing.set(key, read);
  return read;
}

async function readExeHash(pid: number): Promise<string> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(`/proc/${pid}/exe`, 'r');
  } catch (cause) {
    return procFailure(pid, 'cannot open the executable', cause);
  }
  try {
    const key = fileKey(await handle.stat());
    const h = createHash('sha256');
    for await (const chunk of createReadStream('', { fd: handle.fd, autoClose: false, start: 0 }))
      h.update(chunk as Buffer);
    const hex = h.digest('hex');
    remember(key, hex);
    return hex;
  } finally {
    await handle.close();
  }
}

/** Number of executables whose hash is cached (for tests). */
export function exeHashCacheSize(): number {
  return hashCache.size;
}

const idFiles = new Map<string, { key: string; names: Map<number, string> }>();

/** The name of `id` in /etc/passwd or /etc/group, parsed again only when the file changed. */
function nameOf(file: string, id: number): string | undefined {
  try {
    const key = fileKey(statSync(file));
    let cached = idFiles.get(file);
    if (cached?.key !== key) {
      const names = new Map<number, string>();
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const f = line.split(':');
        const n = Number(f[2]);
        if (f.length >= 3 && f[2] !== '' && Number.isInteger(n) && !names.has(n))
          names.set(n, f[0] as string);
      }
      cached = { key, names };
      idFiles.set(file, cached);
    }
    return cached.names.get(id);
  } catch {
    return undefined;
  }
}

/** Attest the peer of a connection; throws `ERR_WORKLOAD_ATTESTATION` or `ERR_WORKLOAD_ATTESTATION_DENIED`. */
export async function attest(cred: PeerCred, options: AttestOptions = {}): Promise<Attestation> {
  const { pid } = cred;
  const before = factsNow(pid);
  if (before.uid !== cred.uid) fail(pid, 'effective uid differs from the connecting credentials');
  let path: string;
  try {
    path = readlinkSync(`/proc/${pid}/exe`);
  } catch (cause) {
    return procFailure(pid, 'cannot read the executable path', cause);
  }
  // Off the event loop: this one read can wait on kernel cgroup locks (see AttestOptions).
  const cgroup = options.container === false ? '' : await readProcAsync(pid, 'cgroup');
  const sha256 = await exeHash(pid);
  const user = nameOf('/etc/passwd', cred.uid);
  const group = nameOf('/etc/group', cred.gid);
  let container: CgroupContainer | undefined;
  let containerError: EdgewardError | undefined;
  if (cgroup !== '') ({ container, error: containerError } = trustedContainerOf(cgroup, options.cgroupRoot));
  let image: Awaited<ReturnType<typeof containerImage>>;
  let imageError: EdgewardError | undefined;
  if (container !== undefined && options.containers !== undefined) {
    try {
      image = await containerImage(container.id, pid, options.containers, container.runtime);
    } catch (err) {
      if (!isEdgewardError(err, 'ERR_WORKLOAD_CONTAINER_METADATA')) throw err;
      imageError = err;
    }
  }
  const after = factsNow(pid);
  if (after.startTime !== before.startTime || after.uid !== before.uid)
    fail(pid, 'the process changed during attestation (pid reuse or setuid)');
  const selectors = new Set<string>([
    `unix:uid:${cred.uid}`,
    `unix:gid:${cred.gid}`,
    `unix:path:${path}`,
    `unix:sha256:${sha256}`,
  ]);
  if (user !== undefined) selectors.add(`unix:user:${user}`);
  if (group !== undefined) selectors.add(`unix:group:${group}`);
  for (const g of before.groups) selectors.add(`unix:supplementary_gid:${g}`);
  if (container !== undefined) selectors.add(`container:id:${container.id}`);
  if (image?.image !== undefined) selectors.add(`container:image:${image.image}`);
  if (image?.imageId !== undefined) selectors.add(`container:image_id:${image.imageId}`);
  const facts = { pid, startTime: before.startTime, uid: before.uid };
  return {
    cred,
    facts,
    selectors,
    ...(imageError === undefined ? {} : { imageError }),
    ...(containerError === undefined ? {} : { containerError }),
  };
}
