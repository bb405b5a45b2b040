/**
 * The SPIFFE Workload API server (SPIFFE Workload API and Workload Endpoint standards): gRPC over
 * a Unix socket, service `SpiffeWorkloadAPI` of the standard `workload.proto` (no proto package).
 *
 * Connection binding: a plain `net.Server` accepts on the socket, reads SO_PEERCRED from the
 * accepted fd at once, tags that socket with a connection id (its `remoteAddress`, which grpc-js
 * reports as the call's peer) and hands it to grpc-js through a connection injector. A call is
 * thus always judged by the kernel credentials of the very connection it arrived on; nothing the
 * caller sends names it. Each call attests the pid again (/proc), and must find the same process
 * (start time, uid) the connection was first attested as: pid reuse fails the call.
 *
 * Rules: every call needs the metadata `workload.spiffe.io: true` (else INVALID_ARGUMENT); a
 * caller matching no registration entry gets PERMISSION_DENIED; `FetchX509SVID` and
 * `FetchX509Bundles` answer at once with the full set and again on every change (rotation at
 * half-life, delegated CA or bundle change, entries reload); a stream whose caller lost its
 * entitlement (entries reload, process gone) ends with PERMISSION_DENIED.
 *
 * Streamed answers are serialized once (`responses.ts`); the two unary JWT calls are in
 * `jwt-calls.ts`; `FetchJWTBundles` streams the trust domain's JWKS from the bundle the agent
 * holds, again on every bundle change. Every JWT call needs an entitled caller, as the X.509 calls
 * do. Methods not in the service: UNIMPLEMENTED.
 *
 * A caller the agent may not inspect (`ERR_WORKLOAD_ATTESTATION_DENIED`: no CAP_SYS_PTRACE for
 * another uid's process) gets PERMISSION_DENIED, logged at error level once per server.
 */
import { chmod, mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Clock, Timer } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import type { Logger } from '../core/logger.ts';
import { RuntimeError } from '../errors.ts';
import {
  type Attestation,
  type AttestOptions,
  canAttestOtherUsers,
  attest as kernelAttest,
  type ProcessFacts,
} from './attest.ts';
import { type ContainerRoots, DEFAULT_CONTAINER_ROOTS } from './container-image.ts';
import { matchEntries, usesContainerImage, type WorkloadEntry } from './entries.ts';
import { deny, fetchJwtSvid, type JwtCallContext, type Status, validateJwtSvidCall } from './jwt-calls.ts';
import { JwtSvidCache } from './jwt-svids.ts';
import { loadPeerCred, type PeerCred, peerCred } from './peercred.ts';
import { workloadService } from './proto.ts';
import { type Encoded, passThroughStreams, WorkloadResponses } from './responses.ts';

export { PROTO_PATH } from './proto.ts';

import { type WorkloadHost, type WorkloadSvid, WorkloadSvids, workloadId } from './svids.ts';

export { DEFAULT_WORKLOAD_SOCKET } from './socket.ts';

export interface WorkloadApiOptions {
  readonly socketPath: string;
  readonly host: WorkloadHost;
  readonly entries: readonly WorkloadEntry[];
  readonly clock: Clock;
  readonly logger: Logger;
  readonly ttlMs?: number;
  /** Attestation of a connection's peer; default: /proc (tests of pid reuse inject a spy around it). */
  readonly attest?: (cred: PeerCred, options: AttestOptions) => Promise<Attestation>;
  /** Where the container runtimes record their containers (for `container:image*`); default Debian's. */
  readonly containers?: ContainerRoots;
  /** A connection that has made no call by then is closed (default FIRST_CALL_MS). */
  readonly firstCallMs?: number;
  /** Open connections per uid (default MAX_CONNECTIONS_PER_UID); more are closed at once. */
  readonly maxConnectionsPerUid?: number;
  /** Calls open at once on one connection (default MAX_STREAMS_PER_CONNECTION). */
  readonly maxStreamsPerConnection?: number;
}

/**
 * The socket is open to every local user, so its cost is bounded per caller: a connection that
 * never gets to a call (no HTTP/2 preface, a half-sent frame) is closed after FIRST_CALL_MS, and
 * one uid holds at most MAX_CONNECTIONS_PER_UID connections (each is a file descriptor of the
 * agent, which also runs the broker): a flood from one user cannot exhaust them.
 */
export const FIRST_CALL_MS = 10_000;
export const MAX_CONNECTIONS_PER_UID = 64;
/** Calls open at once on one connection (a workload needs a handful: X.509, bundles, JWT). */
export const MAX_STREAMS_PER_CONNECTION = 16;

interface Conn {
  readonly cred: PeerCred;
  readonly socket: net.Socket;
  first?: ProcessFacts;
}

interface Stream {
  readonly kind: 'svid' | 'bundles' | 'jwt-bundles';
  readonly call: grpc.ServerWritableStream<unknown, unknown>;
  readonly conn: Conn;
  last: string | undefined;
}

type Unary = grpc.ServerUnaryCall<unknown, unknown>;

export class WorkloadApiServer {
  readonly socketPath: string;
  readonly #o: WorkloadApiOptions;
  readonly #svids: WorkloadSvids;
  readonly #jwt: JwtSvidCache;
  readonly #conns = new Map<string, Conn>();
  readonly #streams = new Set<Stream>();
  readonly #attest: (cred: PeerCred, options: AttestOptions) => Promise<Attestation>;
  /** What attestation reads: the cgroup only when an entry uses `container:`, the runtimes' records only for images. */
  #attestOptions: AttestOptions = {};
  #entries: readonly WorkloadEntry[];
  #grpc: grpc.Server | undefined;
  #injector: grpc.ConnectionInjector | undefined;
  #net: net.Server | undefined;
  #timer: Timer | undefined;
  #unsubscribe: (() => void) | undefined;
  #seq = 0;
  /** Responses serialized once: a new connection's first answer is the last one's bytes. */
  readonly #responses: WorkloadResponses;
  #closed = false;
  /** `ERR_WORKLOAD_ATTESTATION_DENIED` was logged (at error level once; later ones at debug). */
  #deniedLogged = false;

  constructor(o: WorkloadApiOptions) {
    this.#o = o;
    this.socketPath = o.socketPath;
    this.#entries = o.entries;
    this.#setAttestOptions();
    this.#svids = new WorkloadSvids(o.host, o.ttlMs);
    this.#responses = new WorkloadResponses(o.host, this.#svids);
    this.#jwt = new JwtSvidCache({
      now: () => o.host.now(),
      fetchJwtSvid: (id, aud) =>
        o.host.fetchJwtSvid === undefined
          ? Promise.reject(new RuntimeError('ERR_SVID_UNAVAILABLE', 'this agent has no JWT-SVID source'))
          : o.host.fetchJwtSvid(id, aud),
    });
    this.#attest = o.attest ?? kernelAttest;
  }

  get streamCount(): number {
    return this.#streams.size;
  }

  get entries(): readonly WorkloadEntry[] {
    return this.#entries;
  }

  async start(): Promise<void> {
    await loadPeerCred();
    // No channelz: its per-connection and per-call bookkeeping (socket refs, call counters,
    // traces) is for grpc's admin tooling, which this socket does not serve.
    // At most MAX_STREAMS_PER_CONNECTION calls at once on one connection (HTTP/2's
    // SETTINGS_MAX_CONCURRENT_STREAMS; Node's default is unlimited): with the per-uid connection
    // cap, what one local user can hold open is bounded.
    const server = new grpc.Server({
      'grpc.enable_channelz': 0,
      'grpc.max_concurrent_streams': this.#o.maxStreamsPerConnection ?? MAX_STREAMS_PER_CONNECTION,
    });
    const unary =
      (fn: (call: Unary) => Promise<unknown>) =>
      (call: Unary, cb: grpc.sendUnaryData<unknown>): void => {
        fn(call).then(
          (answer) => cb(null, answer),
          (err: unknown) => {
            // Handlers throw a Status; anything else is a fault of ours, never the caller's data.
            if (typeof (err as Status).code === 'number') return cb(err as Status);
            this.#o.logger.error('workload call failed', { event: 'workload.internal', error: String(err) });
            cb({ code: grpc.status.INTERNAL, details: 'internal error' });
          },
        );
      };
    server.addService(passThroughStreams(workloadService()), {
      FetchX509SVID: (call: grpc.ServerWritableStream<unknown, unknown>) => this.#open('svid', call),
      FetchX509Bundles: (call: grpc.ServerWritableStream<unknown, unknown>) => this.#open('bundles', call),
      FetchJWTSVID: unary((call) => this.#jwtCall(call, fetchJwtSvid)),
      FetchJWTBundles: (call: grpc.ServerWritableStream<unknown, unknown>) => this.#open('jwt-bundles', call),
      ValidateJWTSVID: unary((call) => this.#jwtCall(call, validateJwtSvidCall)),
    });
    this.#grpc = server;
    this.#injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const dir = dirname(this.socketPath);
    // A directory made here gets 0755 whatever the umask (the unit's UMask=0077 would give 0700 and
    // lock out every other user); an existing one is left as its owner set it.
    if ((await mkdir(dir, { recursive: true, mode: 0o755 })) !== undefined) await chmod(dir, 0o755);
    await rm(this.socketPath, { force: true });
    const listener = net.createServer((socket) => this.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(this.socketPath, () => {
        listener.off('error', reject);
        resolve();
      });
    });
    // Every local user may connect: who gets what is decided by attestation alone.
    await chmod(this.socketPath, 0o777);
    this.#net = listener;
    this.#unsubscribe = this.#o.host.onChange(() => void this.#push());
    this.#o.logger.info('workload API listening', { event: 'workload.listening', socket: this.socketPath });
    if (!canAttestOtherUsers())
      this.#o.logger.warn(
        'workload API: without CAP_SYS_PTRACE only processes of the agent uid can be attested',
        {
          event: 'workload.unprivileged',
          uid: process.geteuid?.(),
        },
      );
  }

  /** Replace the registration entries; streams of callers no longer entitled end (PERMISSION_DENIED). */
  async setEntries(entries: readonly WorkloadEntry[]): Promise<void> {
    this.#entries = entries;
    this.#responses.clear();
    this.#setAttestOptions();
    this.#svids.retain(new Set(entries.map((e) => e.name)));
    const gw = this.#o.host.caIdentity()?.svid.spiffeId;
    if (gw !== undefined) this.#jwt.retain(new Set(entries.map((e) => workloadId(gw, e.name))));
    this.#o.logger.info('workload entries loaded', { event: 'workload.entries', count: entries.length });
    await this.#push();
  }

  #setAttestOptions(): void {
    const container = this.#entries.some((e) => e.selectors.some((s) => s.startsWith('container:')));
    this.#attestOptions = usesContainerImage(this.#entries)
      ? { container, containers: this.#o.containers ?? DEFAULT_CONTAINER_ROOTS }
      : { container };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#timer?.cancel();
    this.#unsubscribe?.();
    for (const s of this.#streams)
      s.call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'agent stopping' });
    this.#streams.clear();
    await new Promise<void>((resolve) =>
      this.#net === undefined ? resolve() : this.#net.close(() => resolve()),
    );
    this.#injector?.destroy();
    this.#grpc?.forceShutdown();
    await rm(this.socketPath, { force: true });
  }

  #accept(socket: net.Socket): void {
    let cred: PeerCred;
    try {
      cred = peerCred(socket);
    } catch (err) {
      this.#o.logger.warn('workload connection refused', {
        event: 'workload.refused',
        reason: (err as Error).message,
      });
      socket.destroy();
      return;
    }
    const held = [...this.#conns.values()].filter((c) => c.cred.uid === cred.uid).length;
    if (held >= (this.#o.maxConnectionsPerUid ?? MAX_CONNECTIONS_PER_UID)) {
      this.#o.logger.warn('workload connection refused', {
        event: 'workload.refused',
        reason: `uid ${cred.uid} already holds ${held} connections`,
      });
      socket.destroy();
      return;
    }
    const id = `workload-conn-${++this.#seq}`;
    // grpc-js reports `remoteAddress` as the call's peer: the key of this connection's credentials.
    Object.defineProperty(socket, 'remoteAddress', { value: id, configurable: true });
    this.#conns.set(id, { cred, socket });
    socket.once('close', () => this.#conns.delete(id));
    // Until its first call; a stream may then stay open and quiet for as long as it likes.
    socket.setTimeout(this.#o.firstCallMs ?? FIRST_CALL_MS, () => socket.destroy());
    this.#injector?.injectConnection(socket);
  }

  #metadataProblem(md: grpc.Metadata): Status | undefined {
    const v = md.get('workload.spiffe.io');
    return v.length === 1 && v[0] === 'true'
      ? undefined
      : { code: grpc.status.INVALID_ARGUMENT, details: 'security header missing from request' };
  }

  /** The entries of the caller of `call` (re-attested now), or the status to end the call with. */
  async #entitled(conn: Conn): Promise<{ entries: readonly WorkloadEntry[] } | Status> {
    let a: Attestation;
    try {
      a = await this.#attest(conn.cred, this.#attestOptions);
    } catch (err) {
      if (isEdgewardError(err, 'ERR_WORKLOAD_ATTESTATION_DENIED')) {
        // A privilege problem of the agent, not of the caller: said once, loudly, with the reason.
        const fields = { event: 'workload.attestation_denied', pid: conn.cred.pid, uid: conn.cred.uid };
        if (this.#deniedLogged) this.#o.logger.debug('workload attestation not permitted', fields);
        else
          this.#o.logger.error('workload attestation not permitted: the agent cannot attest other users', {
            ...fields,
            code: err.code,
            reason: err.message,
          });
        this.#deniedLogged = true;
        return deny('workload attestation not permitted: the agent may not inspect this process');
      }
      const code = isEdgewardError(err) ? err.code : 'unknown';
      this.#o.logger.warn('workload attestation failed', {
        event: 'workload.attestation_failed',
        pid: conn.cred.pid,
        reason: code,
      });
      return deny('workload attestation failed');
    }
    if (a.imageError !== undefined)
      this.#o.logger.warn('workload container image unknown: no container:image selectors', {
        event: 'workload.container_image_unavailable',
        pid: conn.cred.pid,
        code: a.imageError.code,
        reason: a.imageError.message,
      });
    if (a.containerError !== undefined)
      this.#o.logger.debug('workload container id not trusted: no container:id selector', {
        event: 'workload.container_id_untrusted',
        pid: conn.cred.pid,
        code: a.containerError.code,
        reason: a.containerError.message,
      });
    if (conn.first === undefined) conn.first = a.facts;
    else if (conn.first.startTime !== a.facts.startTime || conn.first.uid !== a.facts.uid)
      return deny('the process of this connection is gone (pid reused)');
    const entries = matchEntries(this.#entries, a.selectors);
    return entries.length === 0 ? deny('no identity issued') : { entries };
  }

  #open(kind: Stream['kind'], call: grpc.ServerWritableStream<unknown, unknown>): void {
    const bad = this.#metadataProblem(call.metadata);
    if (bad !== undefined) return void call.emit('error', bad);
    const conn = this.#conns.get(call.getPeer());
    if (conn === undefined) return void call.emit('error', deny('connection has no kernel credentials'));
    conn.socket.setTimeout(0);
    const stream: Stream = { kind, call, conn, last: undefined };
    this.#streams.add(stream);
    call.once('cancelled', () => this.#streams.delete(stream));
    call.once('close', () => this.#streams.delete(stream));
    void this.#send(stream);
  }

  async #send(stream: Stream): Promise<void> {
    let answer: Encoded;
    try {
      const who = await this.#entitled(stream.conn);
      if ('code' in who) return this.#end(stream, who);
      if (stream.kind === 'svid') {
        const built = await this.#responses.svid(who.entries);
        this.#schedule(built.svids);
        answer = built;
      } else answer = stream.kind === 'bundles' ? this.#responses.bundles() : this.#responses.jwtBundles();
    } catch (err) {
      const code = isEdgewardError(err) ? err.code : 'unknown';
      this.#o.logger.warn('workload response failed', { event: 'workload.unavailable', reason: code });
      return this.#end(stream, { code: grpc.status.UNAVAILABLE, details: `identity unavailable (${code})` });
    }
    if (!this.#streams.has(stream)) return;
    // Only a digest of what was last sent is kept per stream (never a copy of the private key).
    if (answer.key === stream.last) return;
    stream.last = answer.key;
    stream.call.write(answer.bytes);
  }

  #end(stream: Stream, status: Status): void {
    if (!this.#streams.delete(stream)) return;
    stream.call.emit('error', status);
  }

  /** The entries of the caller of a unary call, or the status (thrown) to answer it with. */
  async #caller(call: Unary): Promise<readonly WorkloadEntry[]> {
    const conn = this.#conns.get(call.getPeer());
    if (conn === undefined) throw deny('connection has no kernel credentials');
    conn.socket.setTimeout(0);
    const who = await this.#entitled(conn);
    if ('code' in who) throw who;
    return who.entries;
  }

  /** A JWT call: its metadata checked, then `handle` with a way to attest its caller. */
  #jwtCall(call: Unary, handle: (request: unknown, c: JwtCallContext) => Promise<unknown>): Promise<unknown> {
    const bad = this.#metadataProblem(call.metadata);
    if (bad !== undefined) return Promise.reject(bad);
    return handle(call.request, {
      host: this.#o.host,
      jwt: this.#jwt,
      logger: this.#o.logger,
      caller: () => this.#caller(call),
    });
  }

  /** Arm the refresh timer at the earliest half-life of the SVIDs being served. */
  #schedule(svids: readonly WorkloadSvid[]): void {
    const at = Math.min(...svids.map((s) => s.refreshAt));
    if (!Number.isFinite(at) || this.#closed) return;
    if (this.#timer !== undefined && this.#nextAt !== undefined && this.#nextAt <= at) return;
    this.#timer?.cancel();
    this.#nextAt = at;
    this.#timer = this.#o.clock.setTimer('workload.rotate', Math.max(0, at - this.#o.host.now()), () => {
      this.#timer = undefined;
      this.#nextAt = undefined;
      void this.#push();
    });
  }
  #nextAt: number | undefined;

  async #push(): Promise<void> {
    // Something changed (rotation, CA, bundle, entries): no response built before is reused, and
    // none keeps a replaced private key alive.
    this.#responses.clear();
    await Promise.all([...this.#streams].map((s) => this.#send(s)));
  }
}
