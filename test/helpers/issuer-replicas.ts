/**
 * Issuer replicas as separate OS processes (`edgeward issuer --config F`, the daemon as an
 * operator runs it) on one PostgreSQL database: one dev CA shared by all (`issuer dev-ca`), the
 * schema migrated once (`issuer migrate`), then N daemons, each with its own config file (HTTPS
 * front and probes on ports the kernel picks, its own admin socket). `start()` resolves with what
 * each printed (front URL, health URL, admin socket); `kill()` is kill -9; `stop()` is SIGTERM
 * (the daemon drains) and resolves with the exit code.
 *
 * @example
 * ```ts
 * const set = await replicaSet({ dir, url: db.url, extra: 'svidTtl: 40s' });
 * const [a, b] = await Promise.all([set.start(0), set.start(1)]);
 * a.kill(); await a.exited;               // kill -9
 * assert.is(await b.stop(), 0);           // SIGTERM: drained, exit 0
 * ```
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../../runtime/cli/main.ts';
import { captureIo } from './cli-io.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'runtime/cli/bin.ts');

export interface Replica {
  readonly index: number;
  readonly proc: ChildProcess;
  /** `https://127.0.0.1:<port>`: the gateway-facing front. */
  readonly url: string;
  readonly healthUrl: string;
  readonly socket: string;
  /** Resolves with the exit code (or the signal's name) once the process is gone. */
  readonly exited: Promise<number | string>;
  /** stdout and stderr so far (for failure messages). */
  output(): string;
  kill(): void;
  /** Send a signal (SIGSTOP / SIGCONT to freeze and thaw it). */
  signal(sig: NodeJS.Signals): void;
  stop(): Promise<number | string>;
}

export interface ReplicaSet {
  readonly trustDomain: string;
  /** PEM of the dev CA (the issuer's TLS certificate and every SVID chain to it). */
  readonly caPem: string;
  start(index: number): Promise<Replica>;
  /** `edgeward issuer <args> --socket <replica's socket>`: an operator command on a running replica. */
  operator(replica: Replica, ...args: string[]): Promise<{ code: number; out: string; err: string }>;
}

/**
 * Writes the dev CA and one config per replica into `dir`, migrates the database; `extra` is
 * YAML appended to every config (durations, rate limits).
 */
export async function replicaSet(o: {
  dir: string;
  url: string;
  trustDomain?: string;
  extra?: string;
}): Promise<ReplicaSet> {
  const td = o.trustDomain ?? 'fleet.example';
  const dev = join(o.dir, 'dev');
  mkdirSync(join(o.dir, 'run'), { recursive: true, mode: 0o700 });
  const cli = async (...args: string[]) => {
    const io = captureIo();
    const code = await main(args, io);
    return { code, out: io.stdout.join('\n'), err: io.stderr.join('\n') };
  };
  const made = await cli('issuer', 'dev-ca', '--dir', dev, '--trust-domain', td);
  if (made.code !== 0) throw new Error(`issuer dev-ca failed: ${made.err}`);
  const config = (i: number): string => {
    const file = join(o.dir, `issuer-${i}.yaml`);
    writeFileSync(
      file,
      `version: 3
trustDomain: ${td}
listen: { host: 127.0.0.1, port: 0, certificate: ${dev}/tls.pem, key: ${dev}/tls.key }
ca: { certificate: ${dev}/ca.pem, key: ${dev}/ca.key }
store: { postgres: { url: ${JSON.stringify(o.url)}, poolSize: 8 } }
health: { host: 127.0.0.1, port: 0 }
admin: { socket: ${join(o.dir, 'run', `admin-${i}.sock`)} }
attestation:
  joinToken: { enabled: true }
log: { level: error }
${o.extra ?? ''}
`,
    );
    return file;
  };
  const migrated = await cli('issuer', 'migrate', '--config', config(0));
  if (migrated.code !== 0) throw new Error(`issuer migrate failed: ${migrated.err}`);
  return {
    trustDomain: td,
    caPem: readFileSync(join(dev, 'ca.pem'), 'utf8'),
    start: (i) => spawnReplica(i, config(i)),
    operator: (r, ...args) => cli('issuer', ...args, '--socket', r.socket),
  };
}

async function spawnReplica(index: number, config: string): Promise<Replica> {
  const proc = spawn(process.execPath, ['--import', 'tsx', BIN, 'issuer', '--config', config], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | string>((resolve) =>
    proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const seen = new Promise<RegExpExecArray[]>((resolve, reject) => {
    const wanted = [/listening on (https:\/\/\S+)/, /health (http:\/\/\S+)/, /admin socket (\S+)/];
    const check = () => {
      const found = wanted.map((re) => re.exec(out));
      if (found.every((m) => m !== null)) resolve(found as RegExpExecArray[]);
    };
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      check();
    });
    proc.stderr?.on('data', (c: Buffer) => {
      out += c.toString();
    });
    void exited.then((code) =>
      reject(new Error(`issuer replica ${index} exited (${code}) before it listened:\n${out}`)),
    );
  });
  const [front, health, socket] = (await seen).map((m) => m[1] as string) as [string, string, string];
  return {
    index,
    proc,
    url: front,
    healthUrl: health,
    socket,
    exited,
    output: () => out,
    kill: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
    signal: (sig) => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}
