/**
 * Issuer replicas on PostgreSQL as a load balancer and Prometheus see them, over HTTP (issue 17
 * item 4): /readyz follows the database (stopped → 503 `store: ERR_ISSUER_STORE_UNAVAILABLE`,
 * issuance 503 with that code; back → ready and issuing without a restart, the revocations and
 * CA state committed meanwhile by another replica applied through LISTEN's resync, not a poll:
 * the replicas' clock is virtual and never advanced there); a hung database (every backend
 * stopped) gives a bounded 503, not a request held forever; a replica left without the active
 * CA's key by a rotation answers 503 ERR_ISSUER_CA_INVALID and says so on /readyz, consuming
 * nothing; a schema migrated past this build makes it not ready; /metrics carries the pool, the
 * revocation feed's lag and the CA's NotAfter.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createDevIssuerFiles, type DevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { K } from '../../../runtime/issuer/records.ts';
import { REVOCATION_POLL_MS } from '../../../runtime/issuer/revocations.ts';
import type { IssuerStore } from '../../../runtime/issuer/store.ts';
import { migratePostgresStore, openPostgresStore } from '../../../runtime/issuer/store-postgres.ts';
import type { AttestBeginResponse, IssuedIdentity } from '../../../runtime/upstream/protocol.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { startPostgres, stopTestCluster, testDatabase } from '../../helpers/postgres.ts';
import { testRandom } from '../../helpers/seed.ts';
import { errorCode, type Harness, harness, keyAndCsr, TD } from './harness.ts';

const RELAXED = { perAddress: 1_000_000, perGateway: 1_000_000, windowMs: 60_000 };
const HEALTH = { host: '127.0.0.1', port: 0 };

test.after(() => stopTestCluster());

const httpGet = (url: string): Promise<{ status: number; text: string }> =>
  new Promise((resolve, reject) => {
    get(url, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    }).on('error', reject);
  });

/** The value of an unlabelled series in Prometheus text, or undefined when it is absent. */
function series(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function devFiles(label: string, clock: VirtualClock): Promise<DevIssuerFiles> {
  return createDevIssuerFiles(join(mkdtempSync(join(tmpdir(), 'probes-pg-')), label), {
    trustDomain: TD,
    clock,
    random: testRandom(`probes-${label}`),
  });
}

/** A replica on `url` serving HTTPS and probes; its own pool and randomness, the shared CA files and clock. */
async function replica(
  url: string,
  seed: string,
  shared: { dev: DevIssuerFiles; clock: VirtualClock; next?: DevIssuerFiles },
  queryTimeoutMs?: number,
): Promise<Harness> {
  const store = await openPostgresStore({
    url,
    poolSize: 4,
    ...(queryTimeoutMs === undefined ? {} : { queryTimeoutMs }),
  });
  return harness(
    { joinToken: { enabled: true } },
    {
      store,
      health: HEALTH,
      rateLimit: RELAXED,
      pruneIntervalMs: 7 * 86_400_000,
      ...(shared.next === undefined ? {} : { nextCa: shared.next.ca }),
    },
    { dev: shared.dev, clock: shared.clock, seed },
  );
}

async function attestBegin(h: Harness, name: string): Promise<string> {
  const token = await h.running.issuer.createJoinToken(name, 600_000);
  const begin = await h.call('POST', '/v1/attest/begin', { method: 'join-token', token });
  assert.is(begin.status, 200, begin.text);
  return (begin.body as AttestBeginResponse).sessionId;
}

function attestFinish(h: Harness, sessionId: string) {
  return h.call('POST', '/v1/attest/finish', {
    method: 'join-token',
    sessionId,
    csr: keyAndCsr().csr,
    caCsr: keyAndCsr().csr,
  });
}

async function enroll(h: Harness, name: string) {
  const k = keyAndCsr();
  const sessionId = await attestBegin(h, name);
  const fin = await h.call('POST', '/v1/attest/finish', {
    method: 'join-token',
    sessionId,
    csr: k.csr,
    caCsr: keyAndCsr().csr,
  });
  assert.is(fin.status, 200, fin.text);
  return { id: fin.body as IssuedIdentity, key: k.key };
}

test('PostgreSQL stopped under a replica: /readyz 503 with the reason, issuance 503 typed; started again: ready and issuing without a restart, what another replica committed meanwhile applied', async () => {
  const cluster = await startPostgres();
  const open: Harness[] = [];
  try {
    await cluster.sql('CREATE DATABASE probes_outage');
    const url = cluster.url('probes_outage');
    await migratePostgresStore({ url });
    const clock = new VirtualClock(Date.now());
    const dev = await devFiles('outage', clock);
    const next = await devFiles('outage-next', clock);
    const a = await replica(url, 'outage-a', { dev, clock });
    open.push(a);
    const b = await replica(url, 'outage-b', { dev, clock });
    open.push(b);
    const health = a.running.healthUrl as string;
    assert.equal(await httpGet(`${health}/readyz`), { status: 200, text: 'ready\n' });
    const gw1 = await enroll(a, 'gw-1');
    const seq0 = a.running.issuer.bundle().sequence;

    await cluster.down();
    const down = await httpGet(`${health}/readyz`);
    assert.is(down.status, 503);
    assert.match(down.text, /^store: ERR_ISSUER_STORE_UNAVAILABLE .*cannot be reached/m);
    assert.is((await httpGet(`${health}/healthz`)).status, 200, 'alive while not ready');
    const begin = await a.call('POST', '/v1/attest/begin', { method: 'join-token', token: 'ewj1.x.y' });
    assert.is(begin.status, 503);
    assert.is(errorCode(begin.body), 'ERR_ISSUER_STORE_UNAVAILABLE');
    const renew = await a.call(
      'POST',
      '/v1/renew/begin',
      {},
      { cert: gw1.id.svidChain[0] as Uint8Array, key: gw1.key },
    );
    assert.is(renew.status, 503);
    assert.is(errorCode(renew.body), 'ERR_ISSUER_STORE_UNAVAILABLE');
    const m = (await httpGet(`${health}/metrics`)).text;
    assert.is(series(m, 'edgeward_issuer_ready'), 0);
    assert.is(
      series(m, 'edgeward_issuer_revocation_feed_lag'),
      undefined,
      'no lag claimed without the store',
    );

    await cluster.up();
    // B commits a revocation and a CA change at once; A's listener is still reconnecting, so only
    // its resync from the last seen sequence tells it (the poll runs on the virtual clock: never).
    const { sequence } = await b.running.issuer.revoke('spiffe-id', `spiffe://${TD}/gateway/gw-1`, 'test');
    await b.running.issuer.prepareCa(next.ca, 'test');
    const seq1 = b.running.issuer.bundle().sequence;
    assert.ok(seq1 > seq0);
    await within(a.running.issuer.whenRevocationSeen(sequence), 15_000, 'revocation seen by A');
    await within(a.running.issuer.whenBundleSequence(seq1), 15_000, 'CA change seen by A');
    assert.equal(await httpGet(`${health}/readyz`), { status: 200, text: 'ready\n' });
    const bundle = await a.call('GET', '/v1/bundle');
    assert.is(bundle.text, b.running.issuer.bundle().json, 'one bundle, the next CA published');
    const refused = await a.call(
      'POST',
      '/v1/renew/begin',
      {},
      { cert: gw1.id.svidChain[0] as Uint8Array, key: gw1.key },
    );
    assert.is(refused.status, 403);
    assert.is(errorCode(refused.body), 'ERR_ISSUER_REVOKED');
    const gw2 = await enroll(a, 'gw-2');
    assert.is(gw2.id.spiffeId, `spiffe://${TD}/gateway/gw-2`);
    assert.is(gw2.id.bundleSequence, seq1);
    const after = (await httpGet(`${health}/metrics`)).text;
    assert.is(series(after, 'edgeward_issuer_ready'), 1);
    assert.is(series(after, 'edgeward_issuer_revocation_store_sequence'), sequence);
    assert.is(series(after, 'edgeward_issuer_revocation_feed_lag'), 0);
  } finally {
    for (const h of open) await h.running.close();
    await cluster.stop();
  }
});

test('PostgreSQL hung (every backend stopped, connections open): not ready and a bounded 503 instead of a request held forever; thawed: ready and issuing', async () => {
  const cluster = await startPostgres();
  let a: Harness | undefined;
  try {
    await cluster.sql('CREATE DATABASE probes_hung');
    const url = `${cluster.url('probes_hung')}&connect_timeout=1`;
    await migratePostgresStore({ url });
    const clock = new VirtualClock(Date.now());
    a = await replica(url, 'hung-a', { dev: await devFiles('hung', clock), clock }, 1000);
    const health = a.running.healthUrl as string;
    await enroll(a, 'gw-h1');
    // Every pooled connection open and idle, so requests go to backends that no longer answer.
    await Promise.all([1, 2, 3, 4].map(() => a?.store.get('warm')));
    assert.is(a.store.poolStats?.().idle, 4);
    cluster.freeze();
    try {
      const started = performance.now();
      const begin = await within(
        a.call('POST', '/v1/attest/begin', { method: 'join-token', token: 'ewj1.x.y' }),
        8000,
        'an answer while hung',
      );
      assert.is(begin.status, 503);
      assert.is(errorCode(begin.body), 'ERR_ISSUER_STORE_UNAVAILABLE');
      assert.match(begin.text, /did not answer in time/);
      assert.ok(performance.now() - started < 5000, 'answered within the query timeout');
      const r = await within(httpGet(`${health}/readyz`), 8000, 'readyz while hung');
      assert.is(r.status, 503);
      assert.match(r.text, /^store: (ERR_ISSUER_STORE_UNAVAILABLE|store did not answer)/m);
    } finally {
      cluster.thaw();
    }
    assert.equal(await httpGet(`${health}/readyz`), { status: 200, text: 'ready\n' });
    const gw2 = await enroll(a, 'gw-h2');
    assert.is(gw2.id.spiffeId, `spiffe://${TD}/gateway/gw-h2`);
  } finally {
    await a?.running.close();
    await cluster.stop();
  }
});

test('a replica without the active CA key (rotated by another) answers 503 ERR_ISSUER_CA_INVALID, says why on /readyz, and consumes nothing', async () => {
  const db = await testDatabase('probes_cakey');
  await migratePostgresStore({ url: db.url });
  const clock = new VirtualClock(Date.now());
  const dev = await devFiles('cakey', clock);
  const next = await devFiles('cakey-next', clock);
  const open: Harness[] = [];
  try {
    const a = await replica(db.url, 'cakey-a', { dev, clock, next }); // holds both keys
    open.push(a);
    assert.is((await httpGet(`${a.running.healthUrl}/readyz`)).status, 200);
    await a.running.issuer.rotateCa('test');
    // Started after the rotation (a replica live without the next key would have refused it:
    // ca-rotation.test.ts), with only the first CA's key.
    const b = await replica(db.url, 'cakey-b', { dev, clock });
    open.push(b);
    const seq = a.running.issuer.bundle().sequence;
    await within(b.running.issuer.whenBundleSequence(seq), 5000, 'rotation seen by B');

    const r = await httpGet(`${b.running.healthUrl}/readyz`);
    assert.is(r.status, 503);
    assert.match(r.text, /^ca: ERR_ISSUER_CA_INVALID this replica does not hold the key of the active CA/m);
    assert.not.match(r.text, /^store:/m, 'only the CA key is wrong');
    assert.equal(await httpGet(`${a.running.healthUrl}/readyz`), { status: 200, text: 'ready\n' });

    const sessionId = await attestBegin(b, 'gw-k1');
    const onB = await attestFinish(b, sessionId);
    assert.is(onB.status, 503, onB.text);
    assert.is(errorCode(onB.body), 'ERR_ISSUER_CA_INVALID');
    // B refused before consuming the session: the client's retry of the same finish on a
    // replica that holds the key issues.
    const onA = await attestFinish(a, sessionId);
    assert.is(onA.status, 200, onA.text);
    const svid = new X509Certificate(Buffer.from((onA.body as IssuedIdentity).svidChain[0] as Uint8Array));
    assert.ok(svid.verify(new X509Certificate(Buffer.from(next.ca.certificate)).publicKey));

    // B's metrics still render: not ready, the active CA's NotAfter (the next CA's).
    const m = await httpGet(`${b.running.healthUrl}/metrics`);
    assert.is(m.status, 200);
    assert.is(series(m.text, 'edgeward_issuer_ready'), 0);
    const notAfter = Date.parse(new X509Certificate(Buffer.from(next.ca.certificate)).validTo);
    assert.is(series(m.text, 'edgeward_issuer_ca_not_after_seconds'), Math.floor(notAfter / 1000));
  } finally {
    for (const h of open) await h.running.close();
  }
});

test('a schema migrated by a newer edgeward under a running replica: /readyz 503 with ERR_ISSUER_STORE_SCHEMA_NEWER', async () => {
  const db = await testDatabase('probes_schema');
  await migratePostgresStore({ url: db.url });
  const clock = new VirtualClock(Date.now());
  const a = await replica(db.url, 'schema-a', { dev: await devFiles('schema', clock), clock });
  try {
    const health = a.running.healthUrl as string;
    assert.is((await httpGet(`${health}/readyz`)).status, 200);
    await db.cluster.sql('UPDATE edgeward.schema_version SET version = version + 1', [], db.name);
    const r = await httpGet(`${health}/readyz`);
    assert.is(r.status, 503);
    assert.match(r.text, /^store: ERR_ISSUER_STORE_SCHEMA_NEWER /m);
    await db.cluster.sql('UPDATE edgeward.schema_version SET version = version - 1', [], db.name);
    assert.is((await httpGet(`${health}/readyz`)).status, 200);
  } finally {
    await a.running.close();
  }
});

test('metrics: the pool, the revocation feed lag (a revocation missed until the poll finds it) and the CA expiry', async () => {
  const db = await testDatabase('probes_metrics');
  await migratePostgresStore({ url: db.url });
  const clock = new VirtualClock(Date.now());
  const dev = await devFiles('metrics', clock);
  const a = await replica(db.url, 'metrics-a', { dev, clock });
  // Another writer whose revocation notifies nobody: what a lost notification looks like.
  const other: IssuerStore = await openPostgresStore({ url: db.url, poolSize: 1 });
  try {
    const health = a.running.healthUrl as string;
    const scrape = async () => (await httpGet(`${health}/metrics`)).text;
    await enroll(a, 'gw-m1');
    const m0 = await scrape();
    const total = series(m0, 'edgeward_issuer_store_pool_connections') as number;
    const idle = series(m0, 'edgeward_issuer_store_pool_idle_connections') as number;
    assert.ok(total >= 1 && total <= 4, `open connections ${total}`);
    assert.ok(idle >= 0 && idle <= total, `idle ${idle} of ${total}`);
    assert.is(series(m0, 'edgeward_issuer_store_pool_waiting_requests'), 0);
    assert.is(series(m0, 'edgeward_issuer_store_pool_max_connections'), 4);
    const caNotAfter = Date.parse(new X509Certificate(Buffer.from(dev.ca.certificate)).validTo);
    assert.is(series(m0, 'edgeward_issuer_ca_not_after_seconds'), Math.floor(caNotAfter / 1000));
    assert.is(series(m0, 'edgeward_issuer_revocation_feed_lag'), 0);
    const refreshed = series(m0, 'edgeward_issuer_revocation_refreshed_seconds') as number;
    assert.ok(Math.abs(refreshed - clock.now() / 1000) < 1, `refreshed ${refreshed}`);

    const { sequences } = await other.batch([
      {
        type: 'put-next',
        sequence: 'revocation',
        key: (n) => K.revocation(n),
        value: (n) => ({ sequence: n, kind: 'serial', value: 'ab12', until: clock.now() + 3_600_000 }),
      },
    ]);
    const seq = sequences[0] as number;
    const m1 = await scrape();
    assert.is(series(m1, 'edgeward_issuer_revocation_store_sequence'), seq);
    assert.is(series(m1, 'edgeward_issuer_revocation_sequence'), seq - 1);
    assert.is(series(m1, 'edgeward_issuer_revocation_feed_lag'), 1);
    await clock.advance(REVOCATION_POLL_MS);
    await within(a.running.issuer.whenRevocationSeen(seq), 5000, 'the poll finds the revocation');
    const m2 = await scrape();
    assert.is(series(m2, 'edgeward_issuer_revocation_feed_lag'), 0);
    assert.is(series(m2, 'edgeward_issuer_revocation_sequence'), seq);
    assert.ok((series(m2, 'edgeward_issuer_revocation_refreshed_seconds') as number) >= refreshed + 10);
  } finally {
    await other.close();
    await a.running.close();
  }
});

test.run();
