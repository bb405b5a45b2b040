/**
 * The peer credentials of an accepted Unix-socket connection, from the kernel: `getsockopt(fd,
 * SOL_SOCKET, SO_PEERCRED)` through `koffi` (Node has no API for it). The kernel records pid, uid
 * and gid when the peer called `connect()`; nothing the peer sends can change them.
 *
 * Linux only (struct ucred is { pid_t pid; uid_t uid; gid_t gid; }, 3 × int32 on every ABI).
 */
import type { Socket } from 'node:net';
import { WorkloadError } from '../errors.ts';

export interface PeerCred {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

type GetSockOpt = (fd: number, level: number, name: number, buf: Buffer, len: number[]) => number;
let getsockopt: GetSockOpt | undefined;

/**
 * Load koffi and bind getsockopt (once). Imported lazily, so that a build without koffi's native
 * module (the gateway bundle) fails here, at Workload API start, not when the agent loads.
 */
export async function loadPeerCred(): Promise<void> {
  if (getsockopt !== undefined) return;
  const koffi = (await import('koffi')).default;
  const libc = koffi.load('libc.so.6');
  getsockopt = libc.func('int getsockopt(int, int, int, _Out_ void *, _Inout_ uint32_t *)') as GetSockOpt;
}

function bind(): GetSockOpt {
  if (getsockopt === undefined)
    throw new WorkloadError('ERR_WORKLOAD_PEERCRED', 'SO_PEERCRED not loaded (loadPeerCred first)');
  return getsockopt;
}

/** The file descriptor behind an accepted `net.Socket` (libuv pipe handle). */
function fdOf(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0)
    throw new WorkloadError('ERR_WORKLOAD_PEERCRED', 'connection has no file descriptor');
  return fd;
}

/** SO_PEERCRED of an accepted Unix-socket connection; throws `ERR_WORKLOAD_PEERCRED`. */
export function peerCred(socket: Socket): PeerCred {
  if (process.platform !== 'linux')
    throw new WorkloadError('ERR_WORKLOAD_PEERCRED', 'SO_PEERCRED needs Linux');
  const buf = Buffer.alloc(12);
  const len = [12];
  const rc = bind()(fdOf(socket), SOL_SOCKET, SO_PEERCRED, buf, len);
  if (rc !== 0 || len[0] !== 12)
    throw new WorkloadError('ERR_WORKLOAD_PEERCRED', `getsockopt(SO_PEERCRED) failed (rc ${rc})`);
  const pid = buf.readInt32LE(0);
  if (pid <= 0) throw new WorkloadError('ERR_WORKLOAD_PEERCRED', 'peer has no pid (other pid namespace?)');
  return { pid, uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}
