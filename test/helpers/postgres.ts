/**
 * A throw-away PostgreSQL cluster for tests: `initdb --no-sync` into a temp dir (as the
 * `postgres` user when the tests run as root: initdb and postgres refuse root), the Unix socket
 * in that dir, `fsync=off`, no TCP unless asked (`listen_addresses='127.0.0.1'`), and stopped by
 * the postmaster's PID (SIGINT at the end, SIGQUIT from a process `exit` handler). With `tls`, it
 * listens on 127.0.0.1 with ssl=on and the given certificate. A cluster this process started can
 * be stopped and started again on the same data, socket dir and port (`down()`/`up()`,
 * `restart()`): an outage as the issuer's replicas see it; or frozen (`freeze()`/`thaw()`): a
 * hung database whose connections stay open.
 *
 * `npm test` (scripts/test.mjs) starts one cluster for the whole run with `node --import tsx
 * test/helpers/postgres.ts serve` and passes it in EDGEWARD_TEST_PG (JSON); a test file run on its
 * own starts its own. Either way each test file takes its own database (`testDatabase()`).
 *
 * Roles: `postgres` (superuser, trust over the socket), and `edgeward_pw` (password
 * `PW_PASSWORD`, scram-sha-256: the only role that must give a password), for the tests of a
 * wrong password.
 *
 * @example
 * ```ts
 * const db = await testDatabase('store');   // { url, cluster, name }
 * const store = await openPostgresStore({ url: db.url });
 * ```
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export const PW_ROLE = 'edgeward_pw';
export const PW_PASSWORD = 'correct horse battery staple';

export interface PgClusterInfo {
  /** The directory holding the socket (`.s.PGSQL.<port>`). */
  readonly socketDir: string;
  readonly port: number;
  /** 127.0.0.1 when the cluster listens on TCP. */
  readonly tcpHost?: string;
  readonly pid: number;
  readonly binDir: string;
}

export interface PgCluster extends PgClusterInfo {
  /** `postgresql://user@/db?host=<socketDir>&port=<port>`. */
  url(database: string, user?: string): string;
  /** Runs SQL as the superuser on `database` (default `postgres`). */
  sql<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    params?: unknown[],
    database?: string,
  ): Promise<R[]>;
  stop(): Promise<void>;
  /** Stops the postmaster (fast shutdown: sessions are cut) and starts it again on the same data. */
  restart(): Promise<void>;
  /** Stops the postmaster (fast shutdown), keeping its data, socket dir and port for `up()`. */
  down(): Promise<void>;
  /** Starts the postmaster `down()` stopped, on the same data, socket dir and port. */
  up(): Promise<void>;
  /**
   * A hung database: SIGSTOP to the postmaster and its children (every backend), so connections
   * stay open and nothing answers; `thaw()` sends them SIGCONT.
   */
  freeze(): void;
  thaw(): void;
}

/** The binaries of the newest PostgreSQL installed (Debian: /usr/lib/postgresql/<major>/bin). */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root)
    .filter((d) => /^\d+$/.test(d) && existsSync(join(root, d, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] === undefined ? undefined : join(root, majors[0], 'bin');
}

const isRoot = process.getuid?.() === 0;

/** argv run as the `postgres` user when we are root, as ourselves otherwise. */
function asPostgres(argv: string[]): [string, string[]] {
  return isRoot
    ? ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', ...argv]]
    : [argv[0] as string, argv.slice(1)];
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function connect(info: PgClusterInfo, database: string, user = 'postgres'): pg.Client {
  return new pg.Client({ host: info.socketDir, port: info.port, database, user, password: '' });
}

function cluster(
  info: PgClusterInfo,
  stop: () => Promise<void>,
  own?: { down: () => Promise<void>; up: () => Promise<void> },
): PgCluster {
  let frozen: number[] = [];
  const owned = () => {
    if (own === undefined)
      throw new Error('this process did not start the cluster: it cannot stop or start it');
    return own;
  };
  return {
    socketDir: info.socketDir,
    port: info.port,
    binDir: info.binDir,
    get pid() {
      return info.pid;
    },
    ...(info.tcpHost === undefined ? {} : { tcpHost: info.tcpHost }),
    async restart() {
      const o = owned();
      await o.down();
      await o.up();
    },
    down: () => owned().down(),
    up: () => owned().up(),
    freeze() {
      owned();
      frozen = [info.pid, ...childrenOf(info.pid)];
      for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    },
    thaw() {
      for (const pid of frozen) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {}
      }
      frozen = [];
    },
    url: (database, user = 'postgres') =>
      `postgresql://${encodeURIComponent(user)}@/${encodeURIComponent(database)}?host=${encodeURIComponent(info.socketDir)}&port=${info.port}`,
    async sql(text, params = [], database = 'postgres') {
      const c = connect(info, database);
      await c.connect();
      try {
        return (await c.query(text, params)).rows;
      } finally {
        await c.end();
      }
    },
    stop,
  };
}

/** Starts a cluster; resolves once it accepts connections. */
export async function startPostgres(
  o: { tcp?: boolean; tls?: { cert: string | Buffer; key: string | Buffer } } = {},
): Promise<PgCluster> {
  const binDir = postgresBinDir();
  if (binDir === undefined) {
    throw new Error('PostgreSQL is not installed: apt-get install -y postgresql (npm test does it as root)');
  }
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-pg-'));
  if (isRoot) chownSync(dir, Number(idOf('-u')), Number(idOf('-g')));
  const data = join(dir, 'data');
  const [cmd, args] = asPostgres([
    join(binDir, 'initdb'),
    '-D',
    data,
    '--no-sync',
    '-A',
    'trust',
    '-U',
    'postgres',
    '-E',
    'UTF8',
    '--locale=C',
  ]);
  const init = spawnSync(cmd, args, { encoding: 'utf8' });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${init.stderr}`);
  }
  // The password role first, then trust for everyone else (pg_hba.conf: first match wins).
  writeFileSync(
    join(data, 'pg_hba.conf'),
    [
      `local all ${PW_ROLE} scram-sha-256`,
      'local all all trust',
      `host all ${PW_ROLE} 127.0.0.1/32 scram-sha-256`,
      'host all all 127.0.0.1/32 trust',
      '',
    ].join('\n'),
  );
  if (isRoot) chownSync(join(data, 'pg_hba.conf'), Number(idOf('-u')), Number(idOf('-g')));
  const tlsArgs: string[] = [];
  if (o.tls !== undefined) {
    // TLS on TCP (PEM files the postgres user owns, the key 0600 as the server demands).
    for (const [name, pem] of [
      ['server.crt', o.tls.cert],
      ['server.key', o.tls.key],
    ] as const) {
      writeFileSync(join(data, name), pem, { mode: 0o600 });
      if (isRoot) chownSync(join(data, name), Number(idOf('-u')), Number(idOf('-g')));
    }
    tlsArgs.push('-c', 'ssl=on', '-c', 'ssl_cert_file=server.crt', '-c', 'ssl_key_file=server.key');
  }
  const port = o.tcp || o.tls ? await freePort() : 5432;
  const [pcmd, pargs] = asPostgres([
    join(binDir, 'postgres'),
    '-D',
    data,
    '-k',
    dir,
    '-p',
    String(port),
    '-c',
    `listen_addresses=${o.tcp || o.tls ? '127.0.0.1' : ''}`,
    '-c',
    'fsync=off',
    '-c',
    'synchronous_commit=off',
    '-c',
    'full_page_writes=off',
    '-c',
    'max_connections=200',
    '-c',
    'shared_buffers=16MB',
    ...tlsArgs,
  ]);
  let pid = 0;
  let exited: Promise<void> = Promise.resolve();
  const onExit = () => {
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {}
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  const launch = async () => {
    const child: ChildProcess = spawn(pcmd, pargs, { stdio: ['ignore', 'ignore', 'pipe'] });
    pid = child.pid as number;
    exited = new Promise<void>((r) => child.once('exit', () => r()));
    let log = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (s: string) => {
        log += s;
        if (log.includes('database system is ready to accept connections')) resolve();
      });
      child.once('exit', (code) =>
        reject(new Error(`postgres exited (${code}) before it was ready:\n${log}`)),
      );
    });
  };
  const halt = async () => {
    try {
      process.kill(pid, 'SIGINT'); // fast shutdown: open sessions are terminated
    } catch {}
    await exited;
  };
  try {
    await launch();
  } catch (err) {
    onExit();
    process.off('exit', onExit);
    throw err;
  }
  const info: PgClusterInfo = {
    socketDir: dir,
    port,
    get pid() {
      return pid;
    },
    binDir,
    ...(o.tcp || o.tls ? { tcpHost: '127.0.0.1' } : {}),
  };
  const c = cluster(
    info,
    async () => {
      process.off('exit', onExit);
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
    { down: halt, up: launch },
  );
  await c.sql(`CREATE ROLE ${PW_ROLE} LOGIN PASSWORD '${PW_PASSWORD}'`);
  return c;
}

/** The PIDs of a process's children (Linux /proc). */
function childrenOf(pid: number): number[] {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return text === '' ? [] : text.split(/\s+/).map(Number);
}

function idOf(flag: '-u' | '-g'): string {
  return spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim();
}

let shared: Promise<PgCluster> | undefined;

/** The run's cluster (EDGEWARD_TEST_PG from `npm test`), or one started for this process. */
export function testCluster(): Promise<PgCluster> {
  shared ??= (async () => {
    const env = process.env.EDGEWARD_TEST_PG;
    if (env !== undefined && env !== '') {
      const info = JSON.parse(env) as PgClusterInfo;
      return cluster(info, async () => {});
    }
    return startPostgres();
  })();
  return shared;
}

/** A new empty database on the run's cluster (owned by `edgeward_pw` too, for password tests). */
export async function testDatabase(
  label: string,
): Promise<{ url: string; name: string; cluster: PgCluster }> {
  const c = await testCluster();
  const name = `t_${label.replace(/[^a-z0-9]/g, '_')}_${randomBytes(4).toString('hex')}`;
  await c.sql(`CREATE DATABASE ${name}`);
  await c.sql(`GRANT ALL ON DATABASE ${name} TO ${PW_ROLE}`);
  await c.sql(`GRANT ALL ON SCHEMA public TO ${PW_ROLE}`, [], name);
  return { url: c.url(name), name, cluster: c };
}

/** Stops the run's cluster if this process started it. */
export async function stopTestCluster(): Promise<void> {
  if (shared === undefined) return;
  const c = await shared;
  shared = undefined;
  await c.stop();
}

// `node --import tsx test/helpers/postgres.ts serve`: start a cluster, print its info as one JSON
// line, keep it until stdin closes or SIGTERM, then stop it.
if (process.argv[1]?.endsWith('postgres.ts') && process.argv[2] === 'serve') {
  const c = await startPostgres();
  const info: PgClusterInfo = { socketDir: c.socketDir, port: c.port, pid: c.pid, binDir: c.binDir };
  process.stdout.write(`${JSON.stringify(info)}\n`);
  const stop = () => c.stop();
  let stopping = false;
  const end = () => {
    if (stopping) return;
    stopping = true;
    void stop().then(() => process.exit(0));
  };
  process.stdin.on('end', end);
  process.stdin.on('close', end);
  process.stdin.resume();
  process.on('SIGTERM', end);
  process.on('SIGINT', end);
}
