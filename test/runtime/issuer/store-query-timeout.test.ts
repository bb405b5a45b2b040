/**
 * `store.postgres.queryTimeout` in the issuer's config: 1s..10m (a config error with its line
 * outside), default 30s; the configured value reaches the pool, so a hung database (every backend
 * stopped) fails a read with ERR_ISSUER_STORE_UNAVAILABLE after about that long, not after 30 s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ISSUER_ROLE, loadConfigText } from '../../../runtime/config/load.ts';
import type { ConfigError } from '../../../runtime/errors.ts';
import { openIssuerStore } from '../../../runtime/issuer/store-open.ts';
import { migratePostgresStore } from '../../../runtime/issuer/store-postgres.ts';
import { type PgCluster, startPostgres } from '../../helpers/postgres.ts';
import { rejects } from '../../helpers/rejects.ts';

const dir = mkdtempSync(join(tmpdir(), 'issuer-qt-'));
let cluster: PgCluster | undefined;
test.after(async () => {
  cluster?.thaw();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A v3 config on PostgreSQL; `postgres` is the inside of store.postgres (line 9). */
const config = (postgres: string) => `version: 3
trustDomain: fleet.example
listen: { host: 127.0.0.1, port: 0, certificate: ${dir}/tls.pem, key: ${dir}/tls.key }
ca: { certificate: ${dir}/ca.pem, key: ${dir}/ca.key }
attestation:
  joinToken: { enabled: true }
log: { level: error }
store:
  postgres: { ${postgres} }
`;

const issuesOf = async (text: string) =>
  (await rejects<ConfigError>(() => loadConfigText(text, ISSUER_ROLE), 'ERR_CONFIG_INVALID')).issues.map(
    (i) => `${i.path}: ${i.message}`,
  );

test('store.postgres.queryTimeout is 1s..10m, a duration, a config error with its line otherwise', async () => {
  const url = 'url: "postgresql://issuer@/edgeward"';
  assert.equal(await issuesOf(config(`${url}, queryTimeout: 500ms`)), [
    'store.postgres.queryTimeout: must be at least 1s (line 9)',
  ]);
  assert.equal(await issuesOf(config(`${url}, queryTimeout: 11m`)), [
    'store.postgres.queryTimeout: must be at most 10m (line 9)',
  ]);
  const notDuration = await issuesOf(config(`${url}, queryTimeout: 30`));
  assert.is(notDuration.length, 1, notDuration.join('\n'));
  assert.match(notDuration[0] ?? '', /^store\.postgres\.queryTimeout: /);
  for (const ok of ['1s', '30s', '10m'])
    assert.is(
      loadConfigText(config(`${url}, queryTimeout: ${ok}`), ISSUER_ROLE).store.postgres?.queryTimeout,
      ok,
    );
  assert.is(loadConfigText(config(url), ISSUER_ROLE).store.postgres?.queryTimeout, undefined);
});

test('the configured queryTimeout bounds a read on a hung database (ERR_ISSUER_STORE_UNAVAILABLE in ~1s)', async () => {
  cluster = await startPostgres();
  await cluster.sql('CREATE DATABASE qt');
  const url = cluster.url('qt', 'postgres');
  await migratePostgresStore({ url });
  const cfg = loadConfigText(config(`url: "${url}", poolSize: 2, queryTimeout: 1s`), ISSUER_ROLE);
  const store = await openIssuerStore(cfg.store);
  try {
    assert.is(await store.get('gateway/none'), undefined);
    cluster.freeze();
    const t0 = performance.now();
    const err = await rejects(() => store.get('gateway/none'), 'ERR_ISSUER_STORE_UNAVAILABLE');
    const ms = performance.now() - t0;
    cluster.thaw();
    assert.match((err as Error).message, /did not answer in time/);
    // The default (30 s) would hold it thirty times as long.
    assert.ok(ms >= 900 && ms < 10_000, `failed after ${ms.toFixed(0)} ms`);
  } finally {
    cluster.thaw();
    await store.close();
  }
});

test.run();
