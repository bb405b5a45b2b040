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
 * - `container:id:<64 hex>` when /proc/<pid>/cgroup names a docker, containerd/CRI or podman container.
 *
 * Pid reuse (as SPIRE's peer tracker): the process's start time and real/effective uid are read
 * before and after everything else and must be unchanged, and the uid must be the one the kernel
 * recorded at connect; otherwise `ERR_WORKLOAD_ATTESTATION`. The server also re-checks the start
 * time on every later call of the connection (`stillSame`).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, readlink } from 'node:fs/promises';
import { WorkloadError } from '../errors.ts';
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
}

const CONTAINER_RE =
  /(?:^|[/:-])(?:docker-|libpod-|cri-containerd-|crio-|containerd-)?([0-9a-f]{64})(?:\.scope)?(?:\/|$)/;

export function containerIdOf(cgroup: string): string | undefined {
  for (const line of cgroup.split('\n')) {
    const path = line.split(':').slice(2).join(':');
    const m = CONTAINER_RE.exec(path);
    if (m !== null) return m[1];
  }
  return undefined;
}

const fail = (pid: number, why: string, cause?: unknown): never => {
  throw new WorkloadError('ERR_WORKLOAD_ATTESTATION', `pid ${pid}: ${why}`, { cause });
};

async function readProc(pid: number, file: string): Promise<string> {
  try {
    return await readFile(`/proc/${pid}/${file}`, 'utf8');
  } catch (cause) {
    return fail(pid, `cannot read /proc/${pid}/${file}`, cause);
  }
}

/** Start time (clock ticks since boot, field 22 of /proc/<pid>/stat) and effective uid. */
export async function processFacts(
  pid: number,
): Promise<ProcessFacts & { gids: number[]; groups: number[] }> {
  const stat = await readProc(pid, 'stat');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const startTime = fields[19]; // field 22 overall: 2 fields precede `state`
  if (startTime === undefined || !/^\d+$/.test(startTime)) return fail(pid, 'malformed stat');
  const status = await readProc(pid, 'status');
  const ids = (key: string): number[] => {
    const line = status.split('\n').find((l) => l.startsWith(`${key}:`));
    return line === undefined
      ? []
      : line
          .slice(key.length + 1)
          .trim()
          .split(/\s+/)
          .filter((s) => s !== '')
          .map(Number);
  };
  const uids = ids('Uid');
  if (uids.length < 2) return fail(pid, 'malformed status');
  return { pid, startTime, uid: uids[1] as number, gids: ids('Gid'), groups: ids('Groups') };
}

/** True when `pid` still runs the process attested (same start time, same effective uid). */
export async function stillSame(facts: ProcessFacts): Promise<boolean> {
  try {
    const now = await processFacts(facts.pid);
    return now.startTime === facts.startTime && now.uid === facts.uid;
  } catch {
    return false;
  }
}

const hashCache = new Map<string, string>();

/** SHA-256 of the executable the process runs, cached per (device, inode, size, mtime). */
async function exeHash(pid: number): Promise<string> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(`/proc/${pid}/exe`, 'r');
  } catch (cause) {
    return fail(pid, 'cannot open the executable', cause);
  }
  try {
    const st = await handle.stat();
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    const cached = hashCache.get(key);
    if (cached !== undefined) return cached;
    const h = createHash('sha256');
    for await (const chunk of createReadStream('', { fd: handle.fd, autoClose: false, start: 0 }))
      h.update(chunk as Buffer);
    const hex = h.digest('hex');
    if (hashCache.size > 256) hashCache.clear();
    hashCache.set(key, hex);
    return hex;
  } finally {
    await handle.close();
  }
}

function nameOf(file: string, id: number): Promise<string | undefined> {
  return readFile(file, 'utf8').then(
    (text) =>
      text
        .split('\n')
        .find((l) => l.split(':')[2] === String(id))
        ?.split(':')[0],
    () => undefined,
  );
}

/** Attest the peer of a connection; throws `ERR_WORKLOAD_ATTESTATION`. */
export async function attest(cred: PeerCred): Promise<Attestation> {
  const { pid } = cred;
  const before = await processFacts(pid);
  if (before.uid !== cred.uid) fail(pid, 'effective uid differs from the connecting credentials');
  let path: string;
  try {
    path = await readlink(`/proc/${pid}/exe`);
  } catch (cause) {
    return fail(pid, 'cannot read the executable path', cause);
  }
  const [sha256, cgroup, user, group] = await Promise.all([
    exeHash(pid),
    readProc(pid, 'cgroup'),
    nameOf('/etc/passwd', cred.uid),
    nameOf('/etc/group', cred.gid),
  ]);
  const after = await processFacts(pid);
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
  const container = containerIdOf(cgroup);
  if (container !== undefined) selectors.add(`container:id:${container}`);
  return { cred, facts: { pid, startTime: before.startTime, uid: before.uid }, selectors };
}
