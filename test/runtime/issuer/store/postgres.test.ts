/**
 * The issuer store on a real PostgreSQL (a throw-away cluster, test/helpers/postgres.ts): the
 * conformance suite, then what only a database has: a race held open by another session's row
 * lock, the typed start errors (unreachable, wrong password, not migrated, newer schema, malformed
 * URL; nothing written), `migrate` idempotent under concurrency, and a restart of PostgreSQL under
 * a running store (unavailable, then back without reopening; subscribers told to resync; locks lost).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { StoreEvent } from '../../../../runtime/issuer/store.ts';
import { migratePostgresStore, openPostgresStore } from '../../../../runtime/issuer/store-postgres.ts';
import {
  PW_PASSWORD,
  PW_ROLE,
  startPostgres,
  stopTestCluster,
  testDatabase,
} from '../../../helpers/postgres.ts';
import { rejects } from '../../../helpers/rejects.ts';
import { issuerStoreSuite } from './suite.ts';

issuerStoreSuite('PostgreSQL', async () => {
  const db = await testDatabase('store');
  await migratePostgresStore({ url: db.url });
  const store = await openPostgresStore({ url: db.url, poolSize: 8 });
  const second = await openPostgresStore({ url: db.url, poolSize: 8 });
  return {
    store,
    second,
    async reopen() {
      await Promise.all([store.close(), second.close()]);
      return openPostgresStore({ url: db.url });
    },
    close: async () => {
      await Promise.all([store.close(), second.close()]);
    },
  };
});

test.after(() => stopTestCluster());

/** Resolves once `n` sessions of `database` wait on a lock (asked of pg_stat_activity, no sleeping). */
async function lockWaiters(
  cluster: Awaited<ReturnType<typeof testDatabase>>['cluster'],
  database: string,
  n: number,
) {
  for (;;) {
    const [row] = await cluster.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'`,
      [database],
    );
    if (Number(row?.n) >= n) return;
  }
}

test('single use holds while another session keeps the row locked (the race window held open)', async () => {
  const db = await testDatabase('held');
  await migratePostgresStore({ url: db.url });
  const store = await openPostgresStore({ url: db.url, poolSize: 16 });
  const raw = new pg.Client({
    host: db.cluster.socketDir,
    port: db.cluster.port,
    database: db.name,
    user: 'postgres',
  });
  try {
    await store.batch([{ type: 'put', key: 'token/held', value: 1 }]);
    await raw.connect();
    await raw.query('BEGIN');
    await raw.query(`SELECT 1 FROM edgeward.kv WHERE key = 'token/held' FOR UPDATE`);
    const racers = Array.from({ length: 12 }, (_, i) =>
      store.batch([
        { type: 'present', key: 'token/held' },
        { type: 'del', key: 'token/held' },
        { type: 'put', key: `used/${i}`, value: i },
      ]),
    );
    // Settled from the start: the losers' refusals can arrive on their own sockets before the
    // COMMIT's answer does, and a rejection with no handler yet would end the process.
    const outcome = Promise.allSettled(racers);
    // Every racer is inside its batch, blocked (without the store's key locks all 12 would have
    // passed their check and wait to delete; with them one waits on the row, 11 on the key lock).
    await lockWaiters(db.cluster, db.name, 12);
    await raw.query('COMMIT');
    const settled = await outcome;
    assert.is(settled.filter((s) => s.status === 'fulfilled').length, 1);
    for (const s of settled) {
      if (s.status === 'rejected')
        assert.is((s.reason as { code?: string }).code, 'ERR_ISSUER_STORE_CONFLICT');
    }
    assert.is((await store.list('used/')).length, 1);
  } finally {
    await raw.end();
    await store.close();
  }
});

test('migrate creates the schema once, is idempotent, and concurrent migrations agree', async () => {
  const db = await testDatabase('migrate');
  const runs = await Promise.all([1, 2, 3].map(() => migratePostgresStore({ url: db.url })));
  assert.equal(runs.map((r) => r.from).sort(), [0, 1, 1]);
  assert.ok(runs.every((r) => r.to === 1));
  assert.equal(await migratePostgresStore({ url: db.url }), { from: 1, to: 1 });
  const [row] = await db.cluster.sql<{ version: number }>(
    'SELECT version FROM edgeward.schema_version',
    [],
    db.name,
  );
  assert.is(row?.version, 1);
});

test('a database not migrated yet is refused with ERR_ISSUER_STORE_NOT_MIGRATED, and nothing is written', async () => {
  const db = await testDatabase('unmigrated');
  await rejects(() => openPostgresStore({ url: db.url }), 'ERR_ISSUER_STORE_NOT_MIGRATED');
  const [row] = await db.cluster.sql<{ s: string | null }>(
    `SELECT to_regnamespace('edgeward')::text AS s`,
    [],
    db.name,
  );
  assert.is(row?.s, null);
});

test('a schema newer than this edgeward is refused by replicas and by migrate, and left as it was', async () => {
  const db = await testDatabase('newer');
  await migratePostgresStore({ url: db.url });
  await db.cluster.sql('UPDATE edgeward.schema_version SET version = 99', [], db.name);
  const err = await rejects<{ message: string }>(
    () => openPostgresStore({ url: db.url }),
    'ERR_ISSUER_STORE_SCHEMA_NEWER',
  );
  assert.match(err.message, /version 99/);
  await rejects(() => migratePostgresStore({ url: db.url }), 'ERR_ISSUER_STORE_SCHEMA_NEWER');
  const [row] = await db.cluster.sql<{ version: number }>(
    'SELECT version FROM edgeward.schema_version',
    [],
    db.name,
  );
  assert.is(row?.version, 99);
});

test('a wrong or missing password is ERR_ISSUER_STORE_AUTH; the right one opens the store', async () => {
  const db = await testDatabase('auth');
  await migratePostgresStore({ url: db.url });
  await db.cluster.sql(`GRANT USAGE ON SCHEMA edgeward TO ${PW_ROLE}`, [], db.name);
  await db.cluster.sql(`GRANT ALL ON ALL TABLES IN SCHEMA edgeward TO ${PW_ROLE}`, [], db.name);
  await db.cluster.sql(`GRANT ALL ON ALL SEQUENCES IN SCHEMA edgeward TO ${PW_ROLE}`, [], db.name);
  const url = db.cluster.url(db.name, PW_ROLE);
  const err = await rejects<{ message: string }>(
    () => openPostgresStore({ url, password: 'wrong' }),
    'ERR_ISSUER_STORE_AUTH',
  );
  assert.not.match(err.message, /wrong/);
  await rejects(() => openPostgresStore({ url }), 'ERR_ISSUER_STORE_AUTH');
  await rejects(() => migratePostgresStore({ url, password: 'wrong' }), 'ERR_ISSUER_STORE_AUTH');
  const store = await openPostgresStore({ url, password: PW_PASSWORD });
  await store.batch([{ type: 'put', key: 'k', value: 1 }]);
  assert.is(await store.get('k'), 1);
  await store.close();
});

test('an unreachable database is ERR_ISSUER_STORE_UNAVAILABLE (no socket, closed port, no such database)', async () => {
  const empty = mkdtempSync(join(tmpdir(), 'edgeward-nopg-'));
  rmSync(empty, { recursive: true }); // a socket directory that does not exist
  await rejects(
    () => openPostgresStore({ url: `postgresql://postgres@/x?host=${encodeURIComponent(empty)}` }),
    'ERR_ISSUER_STORE_UNAVAILABLE',
  );
  // A TCP port nobody listens on (bound and closed just before).
  const srv = (await import('node:net')).createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  await rejects(
    () => openPostgresStore({ url: `postgresql://postgres@127.0.0.1:${port}/x` }),
    'ERR_ISSUER_STORE_UNAVAILABLE',
  );
  const db = await testDatabase('nodb');
  await rejects(
    () => migratePostgresStore({ url: db.cluster.url('no_such_database') }),
    'ERR_ISSUER_STORE_UNAVAILABLE',
  );
});

test('a malformed store URL is ERR_ISSUER_STORE_URL and never echoes a password', async () => {
  for (const url of [
    'not a url',
    'http://host/db',
    'postgresql://user:s3cret@host/db',
    'postgresql://host:99999/db',
    'postgresql://host:0/db',
    'postgresql://host',
    'postgresql://host/db?sslmode=require',
    'postgresql://host/db?password=x',
    'postgresql://host/db#frag',
    'postgresql://host/%E0%A4%A/db',
  ]) {
    const err = await rejects<{ message: string }>(() => openPostgresStore({ url }), 'ERR_ISSUER_STORE_URL');
    assert.not.match(err.message, /s3cret/);
  }
  await rejects(
    () => openPostgresStore({ url: 'postgresql://host/db', ca: Buffer.from('x') }),
    'ERR_ISSUER_STORE_URL',
  );
});

test('a password file must be 0600', async () => {
  const { readPasswordFile } = await import('../../../../runtime/issuer/store-postgres-connect.ts');
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-pw-'));
  writeFileSync(join(dir, 'pw'), `${PW_PASSWORD}\n`, { mode: 0o644 });
  await rejects(() => readPasswordFile(join(dir, 'pw')), 'ERR_ISSUER_KEY_PERMISSIONS');
  writeFileSync(join(dir, 'ok'), `${PW_PASSWORD}\n`, { mode: 0o600 });
  assert.is(await readPasswordFile(join(dir, 'ok')), PW_PASSWORD);
  await rejects(() => readPasswordFile(join(dir, 'missing')), 'ERR_ISSUER_STORE_AUTH');
  rmSync(dir, { recursive: true, force: true });
});

test('over TCP with TLS: sslmode=verify-full against caFile works; a certificate of another CA is ERR_ISSUER_STORE_AUTH', async () => {
  const { createDevIssuerFiles } = await import('../../../../runtime/issuer/dev.ts');
  const { systemClock } = await import('../../../../runtime/core/clock.ts');
  const { cryptoRandom } = await import('../../../../runtime/core/random.ts');
  const { readFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-pgtls-'));
  const pki = await createDevIssuerFiles(join(dir, 'a'), {
    trustDomain: 'db.example',
    clock: systemClock,
    random: cryptoRandom,
  });
  const other = await createDevIssuerFiles(join(dir, 'b'), {
    trustDomain: 'db.example',
    clock: systemClock,
    random: cryptoRandom,
  });
  const cluster = await startPostgres({
    tls: { cert: readFileSync(pki.paths.tlsCertificate), key: readFileSync(pki.paths.tlsKey) },
  });
  try {
    const url = `postgresql://${PW_ROLE}@127.0.0.1:${cluster.port}/postgres?sslmode=verify-full`;
    const ca = readFileSync(pki.paths.caCertificate);
    await cluster.sql(`GRANT CREATE ON DATABASE postgres TO ${PW_ROLE}`);
    assert.equal(await migratePostgresStore({ url, password: PW_PASSWORD, ca }), { from: 0, to: 1 });
    const store = await openPostgresStore({ url, password: PW_PASSWORD, ca });
    await store.batch([{ type: 'put', key: 'tls', value: true }]);
    const [row] = await cluster.sql<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.usename = $1`,
      [PW_ROLE],
    );
    assert.ok(Number(row?.n) >= 1, 'the store connection is TLS');
    await store.close();
    await rejects(
      () => openPostgresStore({ url, password: PW_PASSWORD, ca: readFileSync(other.paths.caCertificate) }),
      'ERR_ISSUER_STORE_AUTH',
    );
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('PostgreSQL restarted under a running store: unavailable, then back without a reopen; resync; lock lost', async () => {
  const cluster = await startPostgres();
  try {
    await cluster.sql('CREATE DATABASE restart');
    const url = cluster.url('restart');
    await migratePostgresStore({ url });
    const store = await openPostgresStore({ url, poolSize: 4 });
    const events: StoreEvent[] = [];
    let wake: (() => void) | undefined;
    await store.subscribe('revocations', (e) => {
      events.push(e);
      wake?.();
    });
    const nextEvent = async () => {
      while (events.length === 0) await new Promise<void>((r) => (wake = r));
      return events.shift();
    };
    const lock = await store.tryLock('prune');
    assert.ok(lock);
    await store.batch([{ type: 'put', key: 'a', value: 1 }]);
    const lost = new Promise<void>((r) => lock?.lost.addEventListener('abort', () => r()));
    await cluster.restart();
    await lost;
    assert.is(lock?.lost.aborted, true);
    // The pool's connections died with the server: the first use fails typed or reconnects.
    let failed = 0;
    for (;;) {
      try {
        assert.is(await store.get('a'), 1);
        break;
      } catch (err) {
        assert.is((err as { code?: string }).code, 'ERR_ISSUER_STORE_UNAVAILABLE');
        assert.ok(++failed <= 4, 'at most one failure per pooled connection');
      }
    }
    assert.equal(await nextEvent(), { type: 'resync' });
    await store.batch([{ type: 'notify', channel: 'revocations', payload: 'after' }]);
    assert.equal(await nextEvent(), { type: 'message', payload: 'after' });
    const again = await store.tryLock('prune');
    assert.ok(again, 'the lost lock was released with its session');
    await again?.release();
    await store.close();
  } finally {
    await cluster.stop();
  }
});

test('a store whose database is gone answers ERR_ISSUER_STORE_UNAVAILABLE', async () => {
  const cluster = await startPostgres();
  const url = cluster.url('postgres');
  await migratePostgresStore({ url });
  const store = await openPostgresStore({ url, poolSize: 2 });
  await cluster.stop();
  await rejects(() => store.batch([{ type: 'put', key: 'x', value: 1 }]), 'ERR_ISSUER_STORE_UNAVAILABLE');
  await rejects(() => store.get('x'), 'ERR_ISSUER_STORE_UNAVAILABLE');
  await store.close();
});

test.run();
