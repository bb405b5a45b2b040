/**
 * Workload API test harness: a real `WorkloadApiServer` on a Unix socket in a temp dir, over the
 * test PKI's gateway identity and delegated CA (virtual clock), and the independent client — the
 * Python gRPC stack from Debian with stubs generated from workload.proto by grpc_tools — run as a
 * real process, optionally under another uid (setpriv).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { type KeyObject, X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type LiveIdentity, liveIdentity } from '../../../runtime/agent/identity.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { splitDer as splitDerBuffers } from '../../../runtime/workload/client.ts';
import type { WorkloadEntry } from '../../../runtime/workload/entries.ts';
import { PROTO_PATH, type WorkloadApiOptions, WorkloadApiServer } from '../../../runtime/workload/server.ts';
import type { WorkloadHost } from '../../../runtime/workload/svids.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { buildPki, type TestPki } from '../../helpers/pki.ts';

export const PYTHON = '/usr/bin/python3';
const CLIENT = join(dirname(fileURLToPath(import.meta.url)), 'workload_client.py');

const der = (k: KeyObject): Uint8Array => k.export({ type: 'pkcs8', format: 'der' });

/** Generate the Python stubs from the repo's workload.proto into a fresh temp dir. */
export function pythonStubs(dir: string): string {
  const out = join(dir, 'stubs');
  execFileSync('mkdir', ['-p', out]);
  const protoInclude = execFileSync(PYTHON, [
    '-c',
    'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))',
  ])
    .toString()
    .trim();
  execFileSync(PYTHON, [
    '-m',
    'grpc_tools.protoc',
    `-I${dirname(PROTO_PATH)}`,
    `-I${protoInclude}`,
    `--python_out=${out}`,
    `--grpc_python_out=${out}`,
    'workload.proto',
  ]);
  chmodSync(dir, 0o755);
  return out;
}

export interface ClientLine {
  readonly svids?: {
    id: string;
    sha: string;
    keyLen: number;
    bundleLen: number;
    hint: string;
    /** With `--der`: base64 of the chain (concatenated DER), the PKCS#8 key and the bundle. */
    chain?: string;
    key?: string;
    bundle?: string;
  }[];
  readonly bundles?: Record<string, number>;
  readonly jwt?: { id: string; token: string; hint: string }[];
  readonly jwks?: Record<string, { keys: { kid: string; use: string }[] }>;
  readonly validated?: { id: string; claims: Record<string, unknown> };
  readonly error?: string;
  readonly details?: string;
  readonly end?: boolean;
}

/** A running client process: `next()` resolves with its next JSON line. */
export interface Client {
  readonly proc: ChildProcess;
  next(): Promise<ClientLine>;
  kill(): void;
}

export function startClient(
  stubs: string,
  socket: string,
  args: readonly string[],
  o: { uid?: number; python?: string } = {},
): Client {
  const cmd = [o.python ?? PYTHON, CLIENT, stubs, socket, ...args];
  const proc =
    o.uid === undefined
      ? spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('setpriv', [`--reuid=${o.uid}`, `--regid=${o.uid}`, '--clear-groups', ...cmd], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
  let stderr = '';
  proc.stderr?.on('data', (d) => {
    stderr += d;
  });
  const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  return {
    proc,
    async next() {
      const r = await lines.next();
      if (r.done) throw new Error(`client ended without output; stderr: ${stderr}`);
      return JSON.parse(r.value as string) as ClientLine;
    },
    kill: () => proc.kill('SIGKILL'),
  };
}

export interface Harness {
  readonly dir: string;
  readonly socket: string;
  readonly stubs: string;
  readonly clock: VirtualClock;
  readonly pki: TestPki;
  readonly server: WorkloadApiServer;
  readonly logger: MemoryLogger;
  /** Replace the gateway's delegated CA identity (as an agent rotation does) and notify. */
  setLive(live: LiveIdentity): void;
  live(): LiveIdentity;
  client(args: readonly string[], o?: { uid?: number; python?: string }): Client;
  close(): Promise<void>;
}

export async function harness(
  entries: readonly WorkloadEntry[],
  extra: Partial<WorkloadApiOptions> = {},
  /** Host members to add (the JWT ones: `jwtKeys`, `fetchJwtSvid`). */
  hostExtra: Partial<WorkloadHost> = {},
): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-wl-'));
  const clock = new VirtualClock(Date.now());
  const pki = await buildPki({ now: clock.now() });
  let live = liveIdentity({
    spiffeId: pki.gateway.id,
    svidChain: pki.gateway.chain.map((c) => c.raw),
    svidKey: der(pki.gateway.key),
    caChain: [pki.deviceCa.cert.raw],
    caKeyBackend: 'software',
    caKey: der(pki.deviceCa.key),
    obtainedAt: clock.now(),
    via: 'attest',
    nextNonce: new Uint8Array(32),
  });
  const listeners = new Set<() => void>();
  const logger = new MemoryLogger();
  const socket = join(dir, 'run', 'workload.sock');
  const server = new WorkloadApiServer({
    socketPath: socket,
    entries,
    clock,
    logger,
    host: {
      trustDomain: pki.trustDomain,
      random: seededRandom('workload-test'),
      caIdentity: () => (clock.now() < live.ca.notAfter ? live : undefined),
      bundle: () => pki.bundle,
      clockTrusted: () => true,
      now: () => clock.now(),
      onChange(l) {
        listeners.add(l);
        return () => listeners.delete(l);
      },
      ...hostExtra,
    },
    ...extra,
  });
  await server.start();
  const stubs = pythonStubs(dir);
  const clients: Client[] = [];
  return {
    dir,
    socket,
    stubs,
    clock,
    pki,
    server,
    logger,
    live: () => live,
    setLive(next) {
      live = next;
      for (const l of listeners) l();
    },
    client(args, o) {
      const c = startClient(stubs, socket, args, o);
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.kill();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The certificates of a Workload API DER field (concatenated DER). */
export function splitDer(buf: Buffer): X509Certificate[] {
  return splitDerBuffers(buf).map((d) => new X509Certificate(d));
}
