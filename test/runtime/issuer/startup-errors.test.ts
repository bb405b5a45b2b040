/**
 * `edgeward issuer --config F` on PostgreSQL, as the operator meets it (the real CLI process):
 * each way the database can be wrong at start — unreachable, wrong password, not migrated, a
 * schema newer than this build, a malformed URL — is one typed code on stderr, no stack trace,
 * exit code 1, and nothing written (no row, no schema change, no admin socket, no listener).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { migratePostgresStore } from '../../../runtime/issuer/store-postgres.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { PW_ROLE, stopTestCluster, testDatabase } from '../../helpers/postgres.ts';

const ROOT = join(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'issuer-startup-'));
const dev = join(dir, 'dev');
const socket = join(dir, 'admin.sock');

test.before(async () => {
  assert.is(
    await main(['issuer', 'dev-ca', '--dir', dev, '--trust-domain', 'fleet.example'], captureIo()),
    0,
  );
});
test.after(async () => {
  await stopTestCluster();
  rmSync(dir, { recursive: true, force: true });
});

function config(name: string, store: string): string {
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
${store}
`,
  );
  return file;
}

/** `edgeward issuer --config file` in its own process, to its exit. */
function daemon(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'runtime/cli/bin.ts'), 'issuer', '--config', file],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
    );
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    p.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** One typed code, said once, no stack trace, exit 1, nothing served. */
async function refused(file: string, code: string, message: RegExp): Promise<string> {
  const r = await daemon(file);
  assert.is(r.code, 1, `${r.stdout}${r.stderr}`);
  assert.equal([...new Set(r.stderr.match(/ERR_[A-Z_]+/g))], [code], r.stderr);
  const line = r.stderr.trimEnd().split('\n');
  assert.is(line.length, 1, `one line: ${r.stderr}`);
  assert.match(r.stderr, message, r.stderr);
  assert.not.match(r.stderr, /\n\s+at |unexpected failure/);
  assert.not.match(r.stdout, /listening|admin socket|health/, 'nothing was served');
  assert.not.ok(existsSync(socket), 'no admin socket');
  return r.stderr;
}

const rows = async (db: Awaited<ReturnType<typeof testDatabase>>) =>
  Number((await db.cluster.sql<{ n: string }>('SELECT count(*) AS n FROM edgeward.kv', [], db.name))[0]?.n);

test('database unreachable at start: ERR_ISSUER_STORE_UNAVAILABLE, exit 1', async () => {
  const nowhere = join(dir, 'no-such-socket-dir');
  await refused(
    config(
      'unreachable',
      `  postgres: { url: "postgresql://postgres@/edgeward?host=${encodeURIComponent(nowhere)}" }`,
    ),
    'ERR_ISSUER_STORE_UNAVAILABLE',
    /cannot be reached/,
  );
});

test('wrong password (passwordFile): ERR_ISSUER_STORE_AUTH, exit 1, the password never shown, nothing written', async () => {
  const db = await testDatabase('startup_pw');
  await migratePostgresStore({ url: db.url });
  const pw = join(dir, 'pg-password');
  writeFileSync(pw, 'not the password\n', { mode: 0o600 });
  const err = await refused(
    config('wrong-pw', `  postgres: { url: "${db.cluster.url(db.name, PW_ROLE)}", passwordFile: ${pw} }`),
    'ERR_ISSUER_STORE_AUTH',
    /refused the credentials/,
  );
  assert.not.match(err, /not the password/);
  assert.is(await rows(db), 0);
});

test('not migrated: ERR_ISSUER_STORE_NOT_MIGRATED naming the command, exit 1, no schema created', async () => {
  const db = await testDatabase('startup_unmigrated');
  await refused(
    config('unmigrated', `  postgres: { url: "${db.url}" }`),
    'ERR_ISSUER_STORE_NOT_MIGRATED',
    /edgeward issuer migrate/,
  );
  const [s] = await db.cluster.sql<{ s: string | null }>(
    `SELECT to_regnamespace('edgeward')::text AS s`,
    [],
    db.name,
  );
  assert.is(s?.s, null);
});

test('schema newer than the code: ERR_ISSUER_STORE_SCHEMA_NEWER, exit 1, schema and rows untouched', async () => {
  const db = await testDatabase('startup_newer');
  await migratePostgresStore({ url: db.url });
  await db.cluster.sql('UPDATE edgeward.schema_version SET version = 99', [], db.name);
  await refused(
    config('newer', `  postgres: { url: "${db.url}" }`),
    'ERR_ISSUER_STORE_SCHEMA_NEWER',
    /version 99, newer than this edgeward knows/,
  );
  const [v] = await db.cluster.sql<{ version: number }>(
    'SELECT version FROM edgeward.schema_version',
    [],
    db.name,
  );
  assert.is(v?.version, 99);
  assert.is(await rows(db), 0);
});

test('malformed URL: ERR_CONFIG_INVALID at store.postgres.url with its line, exit 1, a password in it never echoed', async () => {
  await refused(
    config('bad-port', '  postgres: { url: "postgresql://issuer@db.internal:99999/edgeward" }'),
    'ERR_CONFIG_INVALID',
    /store\.postgres\.url.*port 99999.*\(line 11\)/,
  );
  const err = await refused(
    config('with-pw', '  postgres: { url: "postgresql://issuer:hunter2@db.internal/edgeward" }'),
    'ERR_CONFIG_INVALID',
    /store\.postgres\.url.*passwordFile/,
  );
  assert.not.match(err, /hunter2/);
});

test.run();
