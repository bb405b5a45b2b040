/**
 * How the issuer reaches PostgreSQL: the `store.postgres.url` parsed into explicit connection
 * settings (so nothing comes from PG* environment variables or ~/.pgpass: no password in the
 * environment), the password from `passwordFile` only, and failures of node-postgres turned into
 * one typed code each (unreachable, credentials refused, ...).
 *
 * URL forms: `postgresql://user@host:5432/db`, `postgresql://user@/db?host=/run/postgresql`
 * (Unix socket dir), `postgresql://user@%2Frun%2Fpostgresql/db`. Query parameters: `host`, `port`,
 * `sslmode` (`disable`, or `verify-full`: TLS checked against `caFile` or the system roots),
 * `application_name`, `connect_timeout` (seconds). A password in the URL is refused.
 */
import { readFile, stat } from 'node:fs/promises';
import pg from 'pg';
import { IssuerError } from '../errors.ts';

export interface PostgresTarget {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string | undefined;
  readonly tls: boolean;
  readonly applicationName: string;
  readonly connectTimeoutMs: number;
}

const PARAMS = new Set(['host', 'port', 'sslmode', 'application_name', 'connect_timeout']);

function bad(url: string, why: string): IssuerError {
  // Never echo a password: the URL is shown without its userinfo's password part.
  const shown = url.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:***@').slice(0, 300);
  return new IssuerError('ERR_ISSUER_STORE_URL', `store.postgres.url ${shown}: ${why}`);
}

/** Parses the store URL; `ERR_ISSUER_STORE_URL` names what is wrong. */
export function parsePostgresUrl(url: string): PostgresTarget {
  if (typeof url !== 'string') throw bad(String(url), 'not a string');
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)(.*)$/s.exec(url);
  if (m === null) throw bad(url, 'not a URL (expected postgresql://user@host:port/database)');
  const [, scheme, authority, rest] = m as unknown as [string, string, string, string];
  if (scheme !== 'postgresql' && scheme !== 'postgres')
    throw bad(url, `scheme ${scheme}: is not postgresql:`);
  const at = authority.lastIndexOf('@');
  const userinfo = at === -1 ? '' : authority.slice(0, at);
  const hostport = at === -1 ? authority : authority.slice(at + 1);
  if (userinfo.includes(':')) {
    throw bad(url, 'carries a password: put it in store.postgres.passwordFile (mode 0600)');
  }
  const hp = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]*)(?::(\d*))?$/.exec(hostport);
  if (hp === null) throw bad(url, `host ${hostport} is not host[:port]`);
  let u: URL;
  try {
    u = new URL(`http://placeholder${rest}`);
  } catch {
    throw bad(url, 'not a URL (expected postgresql://user@host:port/database)');
  }
  if (u.host !== 'placeholder') throw bad(url, 'not a URL (expected postgresql://user@host:port/database)');
  if (u.hash !== '') throw bad(url, 'has a #fragment');
  for (const k of u.searchParams.keys()) {
    if (!PARAMS.has(k)) throw bad(url, `unknown parameter ${k} (known: ${[...PARAMS].join(', ')})`);
  }
  const hostname = (hp[1] as string).replace(/^\[(.*)\]$/, '$1');
  const urlPort = hp[2] ?? '';
  const q = (k: string) => u.searchParams.get(k) ?? undefined;
  const decode = (s: string, what: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw bad(url, `${what} is not valid percent-encoding`);
    }
  };
  const database = decode(u.pathname.replace(/^\//, ''), 'the database name');
  if (database === '' || database.includes('/')) throw bad(url, 'names no database (…/DATABASE)');
  const host = q('host') ?? (hostname === '' ? '/var/run/postgresql' : decode(hostname, 'the host'));
  const portText = q('port') ?? (urlPort === '' ? '5432' : urlPort);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw bad(url, `port ${portText} is not 1-65535`);
  const sslmode = q('sslmode') ?? 'disable';
  if (sslmode !== 'disable' && sslmode !== 'verify-full') {
    throw bad(
      url,
      `sslmode ${sslmode}: use disable or verify-full (a TLS peer that is not verified is not allowed)`,
    );
  }
  const timeout = q('connect_timeout') ?? '10';
  if (!/^\d{1,4}$/.test(timeout) || Number(timeout) === 0)
    throw bad(url, 'connect_timeout must be 1-9999 seconds');
  const user = userinfo === '' ? undefined : decode(userinfo, 'the user');
  return {
    host,
    port,
    database,
    user,
    tls: sslmode === 'verify-full',
    applicationName: q('application_name') ?? 'edgeward-issuer',
    connectTimeoutMs: Number(timeout) * 1000,
  };
}

/** Reads a secret file that must be mode 0600 (no group or other bits), trailing newline dropped. */
export async function readPasswordFile(path: string): Promise<string> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (cause) {
    throw new IssuerError(
      'ERR_ISSUER_STORE_AUTH',
      `cannot read store.postgres.passwordFile ${path}`,
      {},
      { cause },
    );
  }
  if ((st.mode & 0o077) !== 0) {
    throw new IssuerError(
      'ERR_ISSUER_KEY_PERMISSIONS',
      `${path} is mode ${(st.mode & 0o777).toString(8)}: a password file must be 0600`,
      { path },
    );
  }
  return (await readFile(path, 'utf8')).replace(/\r?\n$/, '');
}

export interface PostgresConnectOptions {
  readonly url: string;
  /** From `passwordFile`; without it, a server that asks for a password is refused (ERR_ISSUER_STORE_AUTH). */
  readonly password?: string;
  /** PEM roots for `sslmode=verify-full` (`caFile`). */
  readonly ca?: Buffer;
  readonly poolSize?: number;
  /**
   * How long a pooled query may go unanswered before it fails with ERR_ISSUER_STORE_UNAVAILABLE
   * and its connection is dropped (default 30 s): a hung or partitioned database gives the
   * request an answer instead of holding it, and its connection, forever. In the config:
   * `store.postgres.queryTimeout` (1s..10m).
   */
  readonly queryTimeoutMs?: number;
}

/** node-postgres settings with every field explicit (nothing read from PG* variables). */
export function clientConfig(o: PostgresConnectOptions): pg.ClientConfig & { target: PostgresTarget } {
  const t = parsePostgresUrl(o.url);
  if (o.ca !== undefined && !t.tls) {
    throw bad(o.url, 'caFile is set but sslmode is not verify-full');
  }
  const password = o.password;
  return {
    target: t,
    host: t.host,
    port: t.port,
    database: t.database,
    user: t.user ?? process.env.USER ?? 'postgres',
    password: async () => {
      if (password === undefined) {
        throw new IssuerError(
          'ERR_ISSUER_STORE_AUTH',
          `PostgreSQL at ${t.host}:${t.port} asks for a password and store.postgres.passwordFile is not set`,
        );
      }
      return password;
    },
    ssl: t.tls ? { rejectUnauthorized: true, ...(o.ca === undefined ? {} : { ca: o.ca }) } : false,
    application_name: t.applicationName,
    connectionTimeoutMillis: t.connectTimeoutMs,
    keepAlive: true,
  };
}

const UNREACHABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOENT',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/** A node-postgres failure as a typed store error (or the error itself when it is not about the connection). */
export function storeError(err: unknown, where: string): unknown {
  if (err instanceof IssuerError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : String(err);
  const typed = (c: 'ERR_ISSUER_STORE_UNAVAILABLE' | 'ERR_ISSUER_STORE_AUTH', what: string) =>
    new IssuerError(c, `${where}: ${what}: ${message}`, { pgCode: code }, { cause: err });
  if (code === '28P01' || code === '28000')
    return typed('ERR_ISSUER_STORE_AUTH', 'the database refused the credentials');
  if (/^SASL|password must be a string/.test(message))
    return typed('ERR_ISSUER_STORE_AUTH', 'authentication failed');
  // A Unix socket (or its directory) this user may not reach: the database is there, but not for
  // this process; the operator fixes the socket directory's mode or the issuer's user (typed, so
  // it is one line at start and a 503 while running, not an unexpected failure).
  if (code === 'EACCES' || code === 'EPERM') {
    return typed(
      'ERR_ISSUER_STORE_UNAVAILABLE',
      "permission denied on the database's socket (its directory must be searchable and the socket writable by this user)",
    );
  }
  if (UNREACHABLE_ERRNO.has(code) || code.startsWith('08') || /^57P0[1-3]$/.test(code) || code === '53300') {
    return typed('ERR_ISSUER_STORE_UNAVAILABLE', 'the database cannot be reached');
  }
  if (code === '3D000') return typed('ERR_ISSUER_STORE_UNAVAILABLE', 'no such database');
  if (
    /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT_ALTNAME_INVALID|HOSTNAME_MISMATCH/.test(code) ||
    /does not support SSL/.test(message)
  ) {
    return typed(
      'ERR_ISSUER_STORE_AUTH',
      "the database's TLS certificate does not verify (caFile, host name)",
    );
  }
  if (/^Query read timeout$/.test(message))
    return typed('ERR_ISSUER_STORE_UNAVAILABLE', 'the database did not answer in time');
  if (
    /Connection terminated|timeout exceeded when trying to connect|connection error|Client was closed|not queryable/i.test(
      message,
    )
  ) {
    return typed('ERR_ISSUER_STORE_UNAVAILABLE', 'the database connection was lost');
  }
  return err;
}

/**
 * node-postgres leaves the socket open when a connection attempt fails after it was established
 * (our password callback refusing, a SASL error): the server would hold it until its
 * authentication_timeout. This client closes it.
 */
export class Client extends pg.Client {
  override connect(): Promise<pg.Client>;
  override connect(callback: (err: Error | null, c?: pg.Client) => void): void;
  override connect(callback?: (err: Error | null, c?: pg.Client) => void): Promise<pg.Client> | undefined {
    const p = super.connect().catch((err: Error) => {
      (this as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      throw err;
    });
    if (callback === undefined) return p;
    p.then(
      (c) => callback(null, c),
      (err: Error) => callback(err),
    );
    return undefined;
  }
}
