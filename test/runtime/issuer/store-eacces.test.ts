/**
 * A PostgreSQL socket the issuer's user may not reach (its directory not searchable by that user:
 * EACCES on connect), as the operator meets it: the real `edgeward issuer` CLI run under another
 * uid (`setpriv`, nobody) against a throw-away cluster. At start it is one typed line
 * `ERR_ISSUER_STORE_UNAVAILABLE ... permission denied`, exit 1, nothing served; while running
 * (the directory made unreachable and the pool's sessions cut) /readyz and an issuance request
 * answer 503 with that code, never "unexpected failure" or ERR_ISSUER_INTERNAL.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { issuerCbor } from '../../../runtime/issuer/store.ts';
import { migratePostgresStore } from '../../../runtime/issuer/store-postgres.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { type PgCluster, startPostgres } from '../../helpers/postgres.ts';

const ROOT = join(import.meta.dirname, '../../..');
const isRoot = process.getuid?.() === 0;
const dir = mkdtempSync(join(tmpdir(), 'issuer-eacces-'));
const dev = join(dir, 'dev');
const socket = join(dir, 'admin.sock');
let cluster: PgCluster;
const DB = 'eacces';

test.before(async () => {
  assert.is(
    await main(['issuer', 'dev-ca', '--dir', dev, '--trust-domain', 'fleet.example'], captureIo()),
    0,
  );
  cluster = await startPostgres();
  await cluster.sql(`CREATE DATABASE ${DB}`);
  await migratePostgresStore({ url: cluster.url(DB, 'postgres') });
  // The issuer's files belong to the user it runs as (nobody), the cluster's directory is the
  // postgres user's (0700 from mkdtemp): nobody cannot reach the socket in it.
  spawnSync('chown', ['-R', 'nobody:nogroup', dir]);
  chmodSync(dir, 0o700);
});
test.after(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function config(name: string): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `version: 3
trustDomain: fleet.example
listen: { host: 127.0.0.1, port: 0, certificate: ${dev}/tls.pem, key: ${dev}/tls.key }
ca: { certificate: ${dev}/ca.pem, key: ${dev}/ca.key }
admin: { socket: ${socket} }
health: { host: 127.0.0.1, port: 0 }
attestation:
  joinToken: { enabled: true }
log: { level: info }
store:
  postgres: { url: "${cluster.url(DB, 'postgres')}", poolSize: 2 }
`,
  );
  spawnSync('chown', ['nobody:nogroup', file]);
  return file;
}

/** `edgeward issuer --config file` as uid nobody, in its own process. */
function daemon(file: string): { p: ChildProcess; out: () => string; err: () => string } {
  const p = spawn(
    'setpriv',
    [
      '--reuid=nobody',
      '--regid=nogroup',
      '--clear-groups',
      '--',
      process.execPath,
      '--import',
      'tsx',
      join(ROOT, 'runtime/cli/bin.ts'),
      'issuer',
      '--config',
      file,
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
  );
  let stdout = '';
  let stderr = '';
  p.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  p.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  return { p, out: () => stdout, err: () => stderr };
}

const exited = (p: ChildProcess): Promise<number | null> =>
  new Promise((resolve) => {
    if (p.exitCode !== null) resolve(p.exitCode);
    else p.once('exit', (code) => resolve(code));
  });

/** Resolves with the first match of `re` in the daemon's stdout (or rejects when it exits first). */
function line(d: ReturnType<typeof daemon>, re: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = re.exec(d.out());
      if (m !== null) {
        d.p.stdout?.off('data', check);
        resolve(m);
      }
    };
    d.p.stdout?.on('data', check);
    d.p.once('exit', () => reject(new Error(`exited before ${re}: ${d.out()}${d.err()}`)));
    check();
  });
}

function http(url: string, method = 'GET', body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('socket directory not reachable by the issuer user at start: ERR_ISSUER_STORE_UNAVAILABLE, exit 1, nothing served', async () => {
  if (!isRoot) return assert.ok(true, 'needs root to run the CLI as another uid');
  chmodSync(cluster.socketDir, 0o700);
  const d = daemon(config('start'));
  const code = await exited(d.p);
  assert.is(code, 1, `${d.out()}${d.err()}`);
  assert.equal([...new Set(d.err().match(/ERR_[A-Z_]+/g))], ['ERR_ISSUER_STORE_UNAVAILABLE'], d.err());
  assert.is(d.err().trimEnd().split('\n').length, 1, `one line: ${d.err()}`);
  assert.match(d.err(), /permission denied/i);
  assert.match(d.err(), /EACCES/);
  assert.not.match(d.err(), /\n\s+at |unexpected failure/);
  assert.not.match(d.out(), /listening|admin socket|health/, 'nothing was served');
  assert.not.ok(existsSync(socket), 'no admin socket');
});

test('socket directory made unreachable while running: /readyz and attest begin answer 503 ERR_ISSUER_STORE_UNAVAILABLE', async () => {
  if (!isRoot) return assert.ok(true, 'needs root to run the CLI as another uid');
  chmodSync(cluster.socketDir, 0o755);
  const d = daemon(config('running'));
  try {
    const health = (await line(d, /health (http:\/\/\S+)/))[1] as string;
    const ready = await http(`${health}/readyz`);
    assert.is(ready.status, 200, ready.text);
    chmodSync(cluster.socketDir, 0o700);
    // Cut the issuer's sessions: its pool and its LISTEN connection must connect again.
    await cluster.sql(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [DB],
    );
    const notReady = await http(`${health}/readyz`);
    assert.is(notReady.status, 503, notReady.text);
    assert.match(notReady.text, /store: ERR_ISSUER_STORE_UNAVAILABLE [^\n]*permission denied/i);
    // An issuance request through the issuer's own API (TLS on its listen port).
    const listen = (await line(d, /listening on (https:\/\/\S+)/))[1] as string;
    const r = await new Promise<{ status: number; body: unknown }>((resolve, reject) => {
      const req = httpsRequest(
        `${listen}/v1/attest/begin`,
        {
          method: 'POST',
          ca: readFileSync(join(dev, 'ca.pem')),
          checkServerIdentity: () => undefined,
          headers: { 'content-type': 'application/cbor' },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: issuerCbor.decode(Buffer.concat(chunks)) }),
          );
        },
      );
      req.on('error', reject);
      req.end(issuerCbor.encode({ method: 'join-token', token: 'x'.repeat(43) }));
    });
    assert.is(r.status, 503, JSON.stringify(r.body));
    assert.is((r.body as { error: { code: string } }).error.code, 'ERR_ISSUER_STORE_UNAVAILABLE');
    assert.not.match(d.err(), /unexpected failure/);
  } finally {
    d.p.kill('SIGTERM');
    await exited(d.p);
  }
});

test.run();
