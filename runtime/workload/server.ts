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
 * JWT-SVIDs: `FetchJWTSVID` answers one token per entry of the caller (or only the `spiffe_id`
 * asked for, PERMISSION_DENIED when the caller is not entitled to it) for the audience list
 * (empty: INVALID_ARGUMENT), from the cache in front of the issuer (`jwt-svids.ts`: until
 * half-life; while the upstream is away, until just before `exp`); `FetchJWTBundles` streams the
 * trust domain's JWKS from the bundle the agent holds, again on every bundle change;
 * `ValidateJWTSVID` checks a token against those keys and the audience (`jwt.ts`; a token that
 * fails, garbage included, and an empty audience or token: INVALID_ARGUMENT). Every JWT call
 * needs an entitled caller, as the X.509 calls do. Methods not in the service: UNIMPLEMENTED.
 *
 * A caller the agent may not inspect (`ERR_WORKLOAD_ATTESTATION_DENIED`: no CAP_SYS_PTRACE for
 * another uid's process) gets PERMISSION_DENIED, logged at error level once per server.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Clock, Timer } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import type { Logger } from '../core/logger.ts';
import { RuntimeError } from '../errors.ts';
import { JWT_SVID_MAX_AUDIENCE_LENGTH, JWT_SVID_MAX_AUDIENCES } from '../upstream/protocol.ts';
import {
  type Attestation,
  type AttestOptions,
  canAttestOtherUsers,
  attest as kernelAttest,
  type ProcessFacts,
} from './attest.ts';
import { type ContainerRoots, DEFAULT_CONTAINER_ROOTS } from './container-image.ts';
import { matchEntries, usesContainerImage, type WorkloadEntry } from './entries.ts';
import { jwksBytes, toStruct, validateJwtSvid } from './jwt.ts';
import { JwtSvidCache } from './jwt-svids.ts';
import { loadPeerCred, type PeerCred, peerCred } from './peercred.ts';
import { workloadService } from './proto.ts';

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
}

/**
 * The socket is open to every local user, so its cost is bounded per caller: a connection that
 * never gets to a call (no HTTP/2 preface, a half-sent frame) is closed after FIRST_CALL_MS, and
 * one uid holds at most MAX_CONNECTIONS_PER_UID connections (each is a file descriptor of the
 * agent, which also runs the broker): a flood from one user cannot exhaust them.
 */
export const FIRST_CALL_MS = 10_000;
export const MAX_CONNECTIONS_PER_UID = 64;

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

type Status = { code: grpc.status; details: string };
const deny = (details: string): Status => ({ code: grpc.status.PERMISSION_DENIED, details });
const invalid = (details: string): Status => ({ code: grpc.status.INVALID_ARGUMENT, details });
const unavailable = (err: unknown): Status => ({
  code: grpc.status.UNAVAILABLE,
  details: `identity unavailable (${isEdgewardError(err) ? err.code : 'unknown'})`,
});
type Unary = grpc.ServerUnaryCall<unknown, unknown>;

/** An X509SVIDResponse serialized once and its digest, with the very objects it was built from. */
interface SvidBody {
  readonly entries: readonly WorkloadEntry[];
  readonly svids: readonly WorkloadSvid[];
  readonly roots: readonly Uint8Array[];
  readonly bytes: Buffer;
  readonly key: string;
}
const SVID_BODIES_MAX = 64;

/** The digest of a response's bytes: what a stream was last sent, without keeping a copy of it. */
const digest = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

type StreamMethod = 'FetchX509SVID' | 'FetchX509Bundles' | 'FetchJWTBundles';

/** A stream's response message serialized once (protobuf), as grpc-js would on every write. */
function encode(method: StreamMethod, body: unknown): Buffer {
  const def = workloadService()[method];
  if (def === undefined) throw new Error(`workload.proto has no ${method}`);
  return def.responseSerialize(body);
}

/**
 * The service as the server registers it: a streamed response is serialized once by `encode` (a
 * new connection's first answer is then the cached bytes, not a fresh protobuf encoding) and
 * grpc-js is handed those bytes; unary answers are serialized by grpc-js as usual.
 */
function passThroughStreams(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(service).map(([name, def]) => [
      name,
      def.responseStream
        ? { ...def, responseSerialize: (v: unknown) => (Buffer.isBuffer(v) ? v : def.responseSerialize(v)) }
        : def,
    ]),
  );
}

const concat = (ders: readonly Uint8Array[]): Buffer => Buffer.concat(ders.map((d) => Buffer.from(d)));

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
  /**
   * X509SVIDResponses by the entry names they answer (at most SVID_BODIES_MAX): a new connection's
   * first answer is the same bytes as the last one while the SVIDs, bundle and entries are the
   * same objects, so it is not rebuilt (chain and bundle concatenated) and hashed again each time.
   */
  readonly #svidBodies = new Map<string, SvidBody>();
  #closed = false;
  /** `ERR_WORKLOAD_ATTESTATION_DENIED` was logged (at error level once; later ones at debug). */
  #deniedLogged = false;

  constructor(o: WorkloadApiOptions) {
    this.#o = o;
    this.socketPath = o.socketPath;
    this.#entries = o.entries;
    this.#setAttestOptions();
    this.#svids = new WorkloadSvids(o.host, o.ttlMs);
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
    const server = new grpc.Server({ 'grpc.enable_channelz': 0 });
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
      FetchJWTSVID: unary((call) => this.#fetchJwtSvid(call)),
      FetchJWTBundles: (call: grpc.ServerWritableStream<unknown, unknown>) => this.#open('jwt-bundles', call),
      ValidateJWTSVID: unary((call) => this.#validateJwtSvid(call)),
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
    this.#svidBodies.clear();
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
    let bytes: Buffer;
    let key: string;
    try {
      const who = await this.#entitled(stream.conn);
      if ('code' in who) return this.#end(stream, who);
      if (stream.kind === 'svid') ({ bytes, key } = await this.#svidResponse(who.entries));
      else {
        bytes =
          stream.kind === 'bundles'
            ? encode('FetchX509Bundles', this.#bundlesResponse())
            : encode('FetchJWTBundles', this.#jwtBundlesResponse());
        key = digest(bytes);
      }
    } catch (err) {
      const code = isEdgewardError(err) ? err.code : 'unknown';
      this.#o.logger.warn('workload response failed', { event: 'workload.unavailable', reason: code });
      return this.#end(stream, { code: grpc.status.UNAVAILABLE, details: `identity unavailable (${code})` });
    }
    if (!this.#streams.has(stream)) return;
    // Only a digest of what was last sent is kept per stream (never a copy of the private key).
    if (key === stream.last) return;
    stream.last = key;
    stream.call.write(bytes);
  }

  #end(stream: Stream, status: Status): void {
    if (!this.#streams.delete(stream)) return;
    stream.call.emit('error', status);
  }

  async #svidResponse(entries: readonly WorkloadEntry[]): Promise<{ bytes: Buffer; key: string }> {
    const roots = this.#bundleRoots();
    const svids: WorkloadSvid[] = await Promise.all(entries.map((e) => this.#svids.get(e.name)));
    this.#schedule(svids);
    const name = entries.map((e) => e.name).join('\n');
    const hit = this.#svidBodies.get(name);
    const same = <T>(a: readonly T[], b: readonly T[]): boolean =>
      a.length === b.length && a.every((x, i) => x === b[i]);
    if (hit !== undefined && same(hit.entries, entries) && same(hit.svids, svids) && same(hit.roots, roots))
      return hit;
    const bundle = concat(roots);
    const body = {
      svids: svids.map((s, i) => ({
        spiffe_id: s.spiffeId,
        x509_svid: concat(s.chain),
        x509_svid_key: s.key,
        bundle,
        hint: entries[i]?.hint ?? '',
      })),
      crl: [],
      federated_bundles: {},
    };
    const bytes = encode('FetchX509SVID', body);
    const built: SvidBody = { entries, svids, roots, bytes, key: digest(bytes) };
    this.#svidBodies.delete(name);
    this.#svidBodies.set(name, built);
    if (this.#svidBodies.size > SVID_BODIES_MAX)
      this.#svidBodies.delete(this.#svidBodies.keys().next().value as string);
    return built;
  }

  #bundlesResponse(): unknown {
    return { crl: [], bundles: { [`spiffe://${this.#o.host.trustDomain}`]: this.#bundleDer() } };
  }

  #jwtBundlesResponse(): unknown {
    const keys = this.#o.host.jwtKeys?.();
    if (keys === undefined)
      throw new RuntimeError('ERR_BUNDLE_UNAVAILABLE', 'no bundle for the trust domain');
    return { bundles: { [`spiffe://${this.#o.host.trustDomain}`]: jwksBytes(keys) } };
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

  async #fetchJwtSvid(call: Unary): Promise<unknown> {
    const bad = this.#metadataProblem(call.metadata);
    if (bad !== undefined) throw bad;
    const req = call.request as { audience?: string[]; spiffe_id?: string };
    const audience = req.audience ?? [];
    if (audience.length === 0) throw invalid('audience must be specified');
    if (
      audience.length > JWT_SVID_MAX_AUDIENCES ||
      audience.some((a) => a.length === 0 || a.length > JWT_SVID_MAX_AUDIENCE_LENGTH)
    )
      throw invalid(
        `audience: 1..${JWT_SVID_MAX_AUDIENCES} values of 1..${JWT_SVID_MAX_AUDIENCE_LENGTH} characters`,
      );
    const entries = await this.#caller(call);
    const gw = this.#o.host.caIdentity()?.svid.spiffeId;
    if (gw === undefined) throw unavailable(new RuntimeError('ERR_SVID_UNAVAILABLE', 'no gateway identity'));
    let ids = entries.map((e) => ({ id: workloadId(gw, e.name), hint: e.hint ?? '' }));
    if (req.spiffe_id !== undefined && req.spiffe_id !== '') {
      ids = ids.filter((i) => i.id === req.spiffe_id);
      if (ids.length === 0) throw deny(`no entitlement to ${req.spiffe_id}`);
    }
    try {
      const svids = await Promise.all(ids.map((i) => this.#jwt.get(i.id, audience)));
      return { svids: svids.map((s, k) => ({ spiffe_id: s.spiffeId, svid: s.token, hint: ids[k]?.hint })) };
    } catch (err) {
      this.#o.logger.warn('JWT-SVID unavailable', {
        event: 'workload.jwt_unavailable',
        reason: isEdgewardError(err) ? err.code : 'unknown',
      });
      throw unavailable(err);
    }
  }

  async #validateJwtSvid(call: Unary): Promise<unknown> {
    const bad = this.#metadataProblem(call.metadata);
    if (bad !== undefined) throw bad;
    const req = call.request as { audience?: string; svid?: string };
    if (!req.audience) throw invalid('audience must be specified');
    if (!req.svid) throw invalid('svid must be specified');
    await this.#caller(call);
    const keys = this.#o.host.jwtKeys?.();
    if (keys === undefined) throw unavailable(new RuntimeError('ERR_BUNDLE_UNAVAILABLE', 'no bundle'));
    try {
      const v = await validateJwtSvid(req.svid, req.audience, {
        trustDomain: this.#o.host.trustDomain,
        keys,
        now: this.#o.host.now(),
      });
      return { spiffe_id: v.spiffeId, claims: toStruct(v.claims as Record<string, unknown>) };
    } catch (err) {
      throw invalid((err as Error).message);
    }
  }

  #bundleDer(): Buffer {
    return concat(this.#bundleRoots());
  }

  /** The DER of each root of the trust domain's X.509 bundle. */
  #bundleRoots(): readonly Uint8Array[] {
    const b = this.#o.host.bundle();
    if (b === undefined || b.roots.length === 0)
      throw new RuntimeError('ERR_BUNDLE_UNAVAILABLE', 'no X.509 bundle for the trust domain');
    return b.roots.map((c) => c.raw);
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
    this.#svidBodies.clear();
    await Promise.all([...this.#streams].map((s) => this.#send(s)));
  }
}
