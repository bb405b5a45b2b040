/**
 * The issuer's `store` config (version 3) and the commands around it, on a real PostgreSQL:
 * `storeDir` of versions 1 and 2 migrates to `store.leveldb.dir`; exactly one backend; a URL
 * that does not parse or carries a password is a config error (`edgeward config check` says so);
 * `edgeward issuer migrate` creates the schema once; the daemon refuses a database that is not
 * migrated (typed code, exit 1, nothing written) and runs on one that is; the password only from
 * a 0600 passwordFile.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../../runtime/cli/main.ts';
import { ISSUER_ROLE, loadConfigText } from '../../../../runtime/config/load.ts';
import type { ConfigError } from '../../../../runtime/errors.ts';
import { captureIo } from '../../../helpers/cli-io.ts';
import { PW_PASSWORD, PW_ROLE, stopTestCluster, testDatabase } from '../../../helpers/postgres.ts';
import { rejects } from '../../../helpers/rejects.ts';

const dir = mkdtempSync(join(tmpdir(), 'issuer-store-config-'));
const dev = join(dir, 'dev');
const io = (signal?: AbortSignal) => captureIo({ cwd: dir, signal });

test.before(async () => {
  assert.is(await main(['issuer', 'dev-ca', '--dir', dev, '--trust-domain', 'fleet.example'], io()), 0);
});
test.after(async () => {
  await stopTestCluster();
  rmSync(dir, { recursive: true, force: true });
});

const head = (version: number) => `version: ${version}
trustDomain: fleet.example
listen: { host: 127.0.0.1, port: 0, certificate: ${dev}/tls.pem, key: ${dev}/tls.key }
ca: { certificate: ${dev}/ca.pem, key: ${dev}/ca.key }
attestation:
  joinToken: { enabled: true }
log: { level: error }
`;

function write(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

test('storeDir of versions 1 and 2 becomes store.leveldb.dir; EDGEWARD_STORE_DIR sets it', () => {
  for (const v of [1, 2]) {
    const cfg = loadConfigText(`${head(v)}storeDir: /var/lib/edgeward-issuer\n`, ISSUER_ROLE);
    assert.equal(cfg.store, { leveldb: { dir: '/var/lib/edgeward-issuer' } });
    assert.is(cfg.version, 3);
  }
  const env = loadConfigText(`${head(3)}store: { leveldb: { dir: /a } }\n`, ISSUER_ROLE, {
    EDGEWARD_STORE_DIR: '/b',
  });
  assert.equal(env.store, { leveldb: { dir: '/b' } });
  const pg = loadConfigText(
    `${head(3)}store:\n  postgres: { url: 'postgresql://issuer@db.internal:5432/edgeward?sslmode=verify-full', passwordFile: /run/secrets/pg, caFile: /etc/pg-ca.pem, poolSize: 20 }\n`,
    ISSUER_ROLE,
  );
  assert.is(pg.store.postgres?.poolSize, 20);
});

test('store names exactly one backend; a bad or password-carrying URL is ERR_CONFIG_INVALID at its line', async () => {
  const cases: [string, string, RegExp][] = [
    ['store: {}\n', 'store', /exactly one/],
    ['store: { leveldb: { dir: /a }, postgres: { url: "postgresql://h/d" } }\n', 'store', /exactly one/],
    [
      'store:\n  postgres: { url: "postgresql://issuer:hunter2@h/d" }\n',
      'store.postgres.url',
      /passwordFile/,
    ],
    ['store:\n  postgres: { url: "mysql://h/d" }\n', 'store.postgres.url', /scheme/],
    [
      'store:\n  postgres: { url: "postgresql://h/d", caFile: /ca.pem }\n',
      'store.postgres.caFile',
      /verify-full/,
    ],
    [
      'store:\n  postgres: { url: "postgresql://h/d", password: x }\n',
      'store.postgres.password',
      /unknown key/,
    ],
    ['store:\n  postgres: { url: "postgresql://h/d", poolSize: 0 }\n', 'store.postgres.poolSize', /./],
  ];
  for (const [yaml, path, message] of cases) {
    const err = await rejects<ConfigError>(
      () => loadConfigText(`${head(3)}${yaml}`, ISSUER_ROLE),
      'ERR_CONFIG_INVALID',
    );
    const issue = err.issues.find((i) => i.path === path);
    assert.ok(issue, `${yaml}: ${JSON.stringify(err.issues)}`);
    assert.match(issue?.message ?? '', message);
    assert.not.match(err.message, /hunter2/);
  }
  const file = write('bad-url.yaml', `${head(3)}store:\n  postgres:\n    url: "postgresql://h:99999/d"\n`);
  const t = io();
  assert.is(await main(['config', 'check', '--role', 'issuer', file], t), 1);
  assert.match(t.stderr.join('\n'), /store\.postgres\.url.*port 99999.*\(line 10\)/);
});

test('issuer migrate creates the schema once; the daemon refuses a database not migrated, then runs on it', async () => {
  const db = await testDatabase('cli');
  const file = write('pg.yaml', `${head(3)}store:\n  postgres: { url: "${db.url}", poolSize: 4 }\n`);
  const refused = io();
  assert.is(await main(['issuer', '--config', file], refused), 1);
  assert.match(refused.stderr.join('\n'), /ERR_ISSUER_STORE_NOT_MIGRATED.*edgeward issuer migrate/);
  const [none] = await db.cluster.sql<{ s: string | null }>(
    `SELECT to_regnamespace('edgeward')::text AS s`,
    [],
    db.name,
  );
  assert.is(none?.s, null, 'the refused start wrote nothing');
  const m = io();
  assert.is(await main(['issuer', 'migrate', '--config', file], m), 0, m.stderr.join());
  assert.match(m.stdout.join(), /migrated from version 0 to 1/);
  const again = io();
  assert.is(await main(['issuer', 'migrate', '--config', file], again), 0);
  assert.match(again.stdout.join(), /is current \(version 1\)/);
  // The daemon on PostgreSQL; an operator command runs beside it (the database allows it).
  const stop = new AbortController();
  const d = io(stop.signal);
  const listening = new Promise<void>((resolve) => {
    const out = d.out;
    d.out = (line) => {
      out(line);
      if (line.includes('listening on')) resolve();
    };
  });
  const done = main(['issuer', '--config', file], d);
  await Promise.race([listening, done]);
  assert.match(d.stdout.join(), /listening on https:/, d.stderr.join());
  const tok = io();
  assert.is(
    await main(['issuer', 'token', 'create', '--config', file, '--name', 'gw-1'], tok),
    0,
    tok.stderr.join(),
  );
  assert.match(tok.stdout[0] ?? '', /^ewj1\./);
  const [row] = await db.cluster.sql<{ n: string }>(
    `SELECT count(*) AS n FROM edgeward.kv WHERE key LIKE 'token/%'`,
    [],
    db.name,
  );
  assert.is(Number(row?.n), 1);
  stop.abort();
  assert.is(await done, 0, d.stderr.join());
  const newer = io();
  await db.cluster.sql('UPDATE edgeward.schema_version SET version = 7', [], db.name);
  assert.is(await main(['issuer', '--config', file], newer), 1);
  assert.match(newer.stderr.join('\n'), /ERR_ISSUER_STORE_SCHEMA_NEWER/);
});

test('an unreachable database stops the daemon with ERR_ISSUER_STORE_UNAVAILABLE, exit 1', async () => {
  const nowhere = mkdtempSync(join(tmpdir(), 'edgeward-nopg-'));
  rmSync(nowhere, { recursive: true }); // a socket directory that does not exist
  const file = write(
    'unreachable.yaml',
    `${head(3)}store:\n  postgres: { url: "postgresql://postgres@/edgeward?host=${encodeURIComponent(nowhere)}" }\n`,
  );
  const t = io();
  assert.is(await main(['issuer', '--config', file], t), 1);
  assert.match(t.stderr.join('\n'), /ERR_ISSUER_STORE_UNAVAILABLE.*cannot be reached/);
});

test('the database password comes from a 0600 passwordFile: wrong, missing and readable-by-others are refused', async () => {
  const db = await testDatabase('cli_pw');
  await db.cluster.sql(`ALTER DATABASE ${db.name} OWNER TO ${PW_ROLE}`);
  const url = db.cluster.url(db.name, PW_ROLE);
  const pw = join(dir, 'pg-password');
  const file = write('pw.yaml', `${head(3)}store:\n  postgres: { url: "${url}", passwordFile: ${pw} }\n`);
  const noFile = write('nopw.yaml', `${head(3)}store:\n  postgres: { url: "${url}" }\n`);
  writeFileSync(pw, 'wrong\n', { mode: 0o600 });
  const wrong = io();
  assert.is(await main(['issuer', 'migrate', '--config', file], wrong), 1);
  assert.match(wrong.stderr.join('\n'), /ERR_ISSUER_STORE_AUTH/);
  const missing = io();
  assert.is(await main(['issuer', 'migrate', '--config', noFile], missing), 1);
  assert.match(missing.stderr.join('\n'), /ERR_ISSUER_STORE_AUTH.*passwordFile is not set/);
  writeFileSync(pw, `${PW_PASSWORD}\n`);
  chmodSync(pw, 0o640);
  const open = io();
  assert.is(await main(['issuer', 'migrate', '--config', file], open), 1);
  assert.match(open.stderr.join('\n'), /ERR_ISSUER_KEY_PERMISSIONS/);
  chmodSync(pw, 0o600);
  const ok = io();
  assert.is(await main(['issuer', 'migrate', '--config', file], ok), 0, ok.stderr.join());
  assert.ok(!readFileSync(file, 'utf8').includes(PW_PASSWORD));
});

test('migrate on a LevelDB store opens (and upgrades) it', async () => {
  const file = write('level.yaml', `${head(3)}store: { leveldb: { dir: ${join(dir, 'level')} } }\n`);
  const t = io();
  assert.is(await main(['issuer', 'migrate', '--config', file], t), 0, t.stderr.join());
  assert.match(t.stdout.join(), /LevelDB store at schema 2/);
});

test.run();
