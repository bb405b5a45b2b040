/**
 * The issuer with N replicas on one PostgreSQL database (issue 17 item 2): two or three `Issuer`
 * instances, each with its own connection pool, on one throw-away database
 * (test/helpers/postgres.ts), raced against each other. Each test fails on the single-process
 * design (get-then-delete behind an in-process set, `{...prev}` rewrites, an in-memory revocation
 * sequence read once at start, a per-process audit counter, per-process rate limits, CA state
 * from each process's own options). The join-token race runs three `edgeward issuer` daemons,
 * each its own OS process (test/helpers/issuer-replicas.ts), over HTTPS.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { systemClock } from '../../../runtime/core/clock.ts';
import { isEdgewardError } from '../../../runtime/core/error.ts';
import { createDevIssuerFiles, type DevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { Issuer, type IssuerOptions } from '../../../runtime/issuer/issuer.ts';
import type { AuditEvent, GatewayRecord } from '../../../runtime/issuer/records.ts';
import type { IssuerStore } from '../../../runtime/issuer/store.ts';
import { migratePostgresStore, openPostgresStore } from '../../../runtime/issuer/store-postgres.ts';
import { httpsUpstream } from '../../../runtime/upstream/client.ts';
import { type AttestBeginResponse, type IssuedIdentity, PATHS } from '../../../runtime/upstream/protocol.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { replicaSet } from '../../helpers/issuer-replicas.ts';
import { startPostgres, stopTestCluster, testDatabase } from '../../helpers/postgres.ts';
import { rejects } from '../../helpers/rejects.ts';
import { testRandom } from '../../helpers/seed.ts';
import { keyAndCsr, TD } from './harness.ts';

const RELAXED = { perAddress: 1_000_000, perGateway: 1_000_000, windowMs: 60_000 };

interface Fleet {
  replicas: Issuer[];
  stores: IssuerStore[];
  clock: VirtualClock;
  dev: DevIssuerFiles;
  close(): Promise<void>;
}

/** `n` issuers on one fresh database, each with its own pool and randomness, one clock. */
async function fleet(
  label: string,
  n: number,
  extra: Partial<IssuerOptions> = {},
  o: { next?: boolean } = {},
): Promise<Fleet & { next?: DevIssuerFiles }> {
  const db = await testDatabase(label);
  await migratePostgresStore({ url: db.url });
  const clock = new VirtualClock(Date.now());
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dev = await createDevIssuerFiles(join(mkdtempSync(join(tmpdir(), 'replicas-')), 'dev'), {
    trustDomain: TD,
    clock,
    random: testRandom(`${label}-dev`),
  });
  const next =
    o.next === true
      ? await createDevIssuerFiles(join(mkdtempSync(join(tmpdir(), 'replicas-')), 'next'), {
          trustDomain: TD,
          clock,
          random: testRandom(`${label}-next`),
        })
      : undefined;
  const stores: IssuerStore[] = [];
  const replicas: Issuer[] = [];
  for (let i = 0; i < n; i++) {
    const store = await openPostgresStore({ url: db.url, poolSize: 8 });
    stores.push(store);
    replicas.push(
      await Issuer.create({
        trustDomain: TD,
        store,
        ca: dev.ca,
        clock,
        random: testRandom(`${label}-replica-${i}`),
        methods: { joinToken: { enabled: true } },
        rateLimit: RELAXED,
        // Pruning only when a test asks (its timer would race the test's own prune calls).
        pruneIntervalMs: 7 * 86_400_000,
        ...(next === undefined ? {} : { nextCa: next.ca }),
        ...extra,
      }),
    );
  }
  return {
    replicas,
    stores,
    clock,
    dev,
    ...(next === undefined ? {} : { next }),
    async close() {
      await Promise.all(replicas.map((r) => r.close()));
      await Promise.all(stores.map((s) => s.close()));
    },
  };
}

const at = <T>(list: readonly T[], i: number): T => list[i % list.length] as T;

async function enroll(on: Issuer, finishOn: Issuer, name: string) {
  const ctx = { address: '10.0.0.1' };
  const token = await on.createJoinToken(name, 600_000);
  const b = await on.attestBegin({ method: 'join-token', token }, ctx);
  const id = await finishOn.attestFinish(
    { method: 'join-token', sessionId: b.sessionId, csr: keyAndCsr().csr, caCsr: keyAndCsr().csr },
    ctx,
  );
  return { id, peer: { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array } };
}

const codeOf = (e: unknown): string => (isEdgewardError(e) ? e.code : String(e));

test.after(() => stopTestCluster());

test('50 join tokens, each redeemed by 8 concurrent attempts spread over 3 replica processes: exactly 50 identities', async () => {
  // Three `edgeward issuer` daemons (their own processes and pools) on one database, over HTTPS:
  // each attempt begins on one replica and finishes on the next.
  const dir = mkdtempSync(join(tmpdir(), 'replicas-tokens-'));
  const db = await testDatabase('tokens');
  const set = await replicaSet({
    dir,
    url: db.url,
    trustDomain: TD,
    extra: 'rateLimit: { perAddress: 1000000, perGateway: 1000000, window: 1s }',
  });
  const replicas = await Promise.all([0, 1, 2].map((i) => set.start(i)));
  const store = await openPostgresStore({ url: db.url, poolSize: 2 });
  try {
    const tokens = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const r = await set.operator(at(replicas, i), 'token', 'create', '--name', `gw-${i}`);
        assert.is(r.code, 0, r.err);
        return r.out.trim();
      }),
    );
    const up = httpsUpstream({
      endpoints: replicas.map((r) => r.url),
      ca: [set.caPem],
      clock: systemClock,
      timeoutMs: 60_000,
    });
    const attempt = async (token: string, n: number): Promise<IssuedIdentity | string> => {
      try {
        const b = await at(up.endpoints, n).post<AttestBeginResponse>(PATHS.attestBegin, {
          method: 'join-token',
          token,
        });
        return await at(up.endpoints, n + 1).post<IssuedIdentity>(PATHS.attestFinish, {
          method: 'join-token',
          sessionId: b.sessionId,
          csr: keyAndCsr().csr,
          caCsr: keyAndCsr().csr,
        });
      } catch (e) {
        const remote = (e as { fields?: { remoteCode?: unknown } }).fields?.remoteCode;
        return typeof remote === 'string' ? remote : codeOf(e);
      }
    };
    // Ten tokens at a time, the 8 attempts on each at once (80 requests in flight).
    const results: (IssuedIdentity | string)[] = [];
    for (let t = 0; t < 50; t += 10)
      results.push(
        ...(await Promise.all(
          tokens
            .slice(t, t + 10)
            .flatMap((token, i) => Array.from({ length: 8 }, (_, k) => attempt(token, t + i + k))),
        )),
      );
    const issued = results.filter((r): r is IssuedIdentity => typeof r !== 'string');
    const refused = results.filter((r): r is string => typeof r === 'string');
    assert.is(issued.length, 50, `identities issued: ${issued.length}`);
    assert.is(new Set(issued.map((i) => i.spiffeId)).size, 50, 'one identity per token');
    assert.equal([...new Set(refused)], ['ERR_ISSUER_TOKEN_INVALID']);
    assert.is((await store.list('issued/')).length, 100, '50 SVIDs and 50 delegated CAs recorded');
    assert.is((await store.list('token/')).length, 0);
    const events = (await store.list<AuditEvent>('audit/')).map(([, e]) => e);
    assert.is(events.filter((e) => e.event === 'issue').length, 50, 'one issuance audited per token');
  } finally {
    await store.close();
    for (const r of replicas) r.kill();
    await Promise.all(replicas.map((r) => r.exited));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a disable on one replica is never undone by a renewal rewriting the record on another', async () => {
  const f = await fleet('disable', 2);
  try {
    const [a, b] = f.replicas as [Issuer, Issuer];
    const outcomes = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const name = `gw-d${i}`;
      const { peer } = await enroll(a, b, name);
      const rb = await a.renewBegin(peer);
      const renewal = a
        .renewFinish({ sessionId: rb.sessionId, csr: keyAndCsr().csr, caCsr: keyAndCsr().csr }, peer)
        .then(
          () => 'renewed',
          (e: unknown) => codeOf(e),
        );
      const [outcome] = await Promise.all([renewal, b.setDisabled(name, true, 'test')]);
      outcomes.add(outcome);
      assert.ok(outcome === 'renewed' || outcome === 'ERR_ISSUER_GATEWAY_DISABLED', outcome);
      const gw = await (f.stores[1] as IssuerStore).get<GatewayRecord>(`gw/${name}`);
      assert.is(gw?.disabled, true, `${name}: the disable survived (${outcome})`);
      await rejects(async () => {
        const again = await b.renewBegin(peer);
        await a.renewFinish({ sessionId: again.sessionId, csr: keyAndCsr().csr }, peer);
      }, 'ERR_ISSUER_GATEWAY_DISABLED');
    }
  } finally {
    await f.close();
  }
});

test('a revocation on replica A refuses renewal on replica B within 1 s; sequences are the store’s, in commit order', async () => {
  const f = await fleet('revoke', 2);
  try {
    const [a, b] = f.replicas as [Issuer, Issuer];
    const { peer } = await enroll(a, b, 'gw-r');
    const rb = await b.renewBegin(peer);
    const t0 = performance.now();
    const { sequence } = await a.revoke('spiffe-id', `spiffe://${TD}/gateway/gw-r`, 'test');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      b.whenRevocationSeen(sequence),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('replica B did not see the revocation within 1 s')), 1000);
      }),
    ]).finally(() => clearTimeout(timer));
    const lag = performance.now() - t0;
    assert.ok(lag < 1000, `seen after ${lag.toFixed(0)} ms`);
    await rejects(
      () => b.renewFinish({ sessionId: rb.sessionId, csr: keyAndCsr().csr }, peer),
      'ERR_ISSUER_REVOKED',
    );
    // Concurrent revocations on both replicas: distinct sequences, none lost, both feeds equal.
    const many = await Promise.all(
      Array.from({ length: 20 }, (_, i) => at(f.replicas, i).revoke('serial', (0x1000 + i).toString(16))),
    );
    const seqs = many.map((m) => m.sequence).sort((x, y) => x - y);
    assert.is(new Set(seqs).size, 20, 'no sequence given twice');
    const last = seqs[seqs.length - 1] as number;
    await Promise.all([a.whenRevocationSeen(last), b.whenRevocationSeen(last)]);
    assert.equal(a.revocationFeed(0), b.revocationFeed(0));
    assert.is(a.revocationFeed(0).entries.length, 21);
  } finally {
    await f.close();
  }
});

test('audit ids are unique across replicas writing at the same millisecond', async () => {
  const f = await fleet('audit', 3);
  try {
    await Promise.all(
      Array.from({ length: 150 }, (_, i) =>
        at(f.replicas, i).refuse('ERR_ISSUER_BAD_REQUEST', { address: `10.2.0.${i}` }, `probe ${i}`),
      ),
    );
    const events = await (f.replicas[0] as Issuer).auditEvents(0, 1000);
    const probes = events.filter((e) => e.detail?.startsWith('probe '));
    assert.is(probes.length, 150, 'every event kept (a colliding key would overwrite one)');
  } finally {
    await f.close();
  }
});

test('the per-address rate limit holds across replicas: 3 replicas allow the limit, not 3x', async () => {
  const windowMs = 60_000;
  const f = await fleet('ratelimit', 3, { rateLimit: { perAddress: 10, perGateway: 1000, windowMs } });
  try {
    const ctx = { address: '10.3.0.1' };
    const ask = (i: number) =>
      at(f.replicas, i)
        .attestBegin({ method: 'join-token', token: `not-a-token-${i}` }, ctx)
        .then(
          () => 'ok',
          (e: unknown) => codeOf(e),
        );
    // One after the other, round robin: exactly the limit passes (to the token check).
    const sequential: string[] = [];
    for (let i = 0; i < 15; i++) sequential.push(await ask(i));
    assert.equal(sequential.slice(0, 10), Array(10).fill('ERR_ISSUER_TOKEN_INVALID'));
    assert.equal(sequential.slice(10), Array(5).fill('ERR_ISSUER_RATE_LIMITED'));
    // The next window, all at once over the replicas: never more than the limit.
    await f.clock.advance(windowMs);
    const burst = await Promise.all(Array.from({ length: 60 }, (_, i) => ask(i)));
    assert.is(burst.filter((c) => c === 'ERR_ISSUER_TOKEN_INVALID').length, 10, 'exactly the limit passed');
    assert.is(burst.filter((c) => c === 'ERR_ISSUER_RATE_LIMITED').length, 50);
    // Pruning drops the counters of windows that are over, and only those.
    await f.clock.advance(windowMs);
    await ask(0);
    const store = f.stores[0] as IssuerStore;
    assert.is(await (f.replicas[1] as Issuer).prune(), true);
    assert.is(await store.dropSequences('rl.', 'rl/'), 1, 'only the current window’s counter was left');
  } finally {
    await f.close();
  }
});

test('pruning is a singleton job: a replica does not prune while another holds the lock', async () => {
  const f = await fleet('prune', 2);
  try {
    const [a, b] = f.replicas as [Issuer, Issuer];
    await a.createJoinToken('gw-p', 1000);
    await f.clock.advance(2000);
    const lock = await (f.stores[0] as IssuerStore).tryLock('prune');
    assert.ok(lock !== undefined);
    assert.is(await b.prune(), false, 'B sees the lock held');
    assert.is((await (f.stores[1] as IssuerStore).list('token/')).length, 1, 'nothing pruned');
    await lock.release();
    assert.is(await b.prune(), true);
    assert.is((await (f.stores[1] as IssuerStore).list('token/')).length, 0);
    assert.is(await a.prune(), true, 'released after each run');
  } finally {
    await f.close();
  }
});

/** Rejects when `p` has not resolved within `ms` (real time: the bound under test). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

test('ca rotate on one replica is applied by the others: they sign with the next CA and serve one bundle', async () => {
  const f = await fleet('carotate', 3, {}, { next: true });
  try {
    const [a, b, c] = f.replicas as [Issuer, Issuer, Issuer];
    const old = new X509Certificate(Buffer.from(f.dev.ca.certificate));
    const nextCa = new X509Certificate(Buffer.from((f.next as DevIssuerFiles).ca.certificate));
    const before = await enroll(b, c, 'gw-c1');
    assert.ok(new X509Certificate(Buffer.from(before.id.svidChain[0] as Uint8Array)).verify(old.publicKey));
    const seq0 = a.bundle().sequence;
    assert.is(b.bundle().sequence, seq0, 'one bundle sequence across replicas');
    await a.rotateCa('test');
    const seq1 = a.bundle().sequence;
    assert.ok(seq1 > seq0, 'the rotation is a new bundle sequence');
    await within(
      Promise.all([b.whenBundleSequence(seq1), c.whenBundleSequence(seq1)]),
      1000,
      'rotation seen',
    );
    for (const r of [b, c]) {
      assert.is(r.bundle().json, a.bundle().json, 'the same bundle everywhere');
      assert.ok(r.caCertificate.equals(nextCa.raw), 'the next CA signs');
    }
    const after = await enroll(c, b, 'gw-c2');
    const svid = new X509Certificate(Buffer.from(after.id.svidChain[0] as Uint8Array));
    assert.ok(svid.verify(nextCa.publicKey), 'issued after the rotation: signed by the next CA');
    assert.is(after.id.bundleSequence, seq1);
    // The retired CA stays in the bundle (what it signed is still valid).
    assert.ok(a.roots().some((r) => r.raw.equals(old.raw)));
    // A replica started afterwards with the old configuration follows the store, not its config.
    const late = await Issuer.create({
      trustDomain: TD,
      store: f.stores[0] as IssuerStore,
      ca: f.dev.ca,
      nextCa: (f.next as DevIssuerFiles).ca,
      clock: f.clock,
      random: testRandom('carotate-late'),
      methods: { joinToken: { enabled: true } },
      rateLimit: RELAXED,
    });
    try {
      assert.ok(late.caCertificate.equals(nextCa.raw));
      assert.is(late.bundle().sequence, seq1);
    } finally {
      await late.close();
    }
  } finally {
    await f.close();
  }
});

/** `fn` again while it fails with ERR_ISSUER_STORE_UNAVAILABLE (each pooled connection that died fails once). */
async function afterOutage<T>(fn: () => Promise<T>, tries = 20): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (codeOf(e) !== 'ERR_ISSUER_STORE_UNAVAILABLE' || i >= tries) throw e;
    }
  }
}

test('PostgreSQL restarted under running replicas: they recover without a restart; a revocation made right after reaches the other replica (resync)', async () => {
  const cluster = await startPostgres();
  const stores: IssuerStore[] = [];
  const replicas: Issuer[] = [];
  try {
    await cluster.sql('CREATE DATABASE replicas_restart');
    const url = cluster.url('replicas_restart');
    await migratePostgresStore({ url });
    const clock = new VirtualClock(Date.now());
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dev = await createDevIssuerFiles(join(mkdtempSync(join(tmpdir(), 'replicas-')), 'dev'), {
      trustDomain: TD,
      clock,
      random: testRandom('restart-dev'),
    });
    for (let i = 0; i < 2; i++) {
      const store = await openPostgresStore({ url, poolSize: 4 });
      stores.push(store);
      replicas.push(
        await Issuer.create({
          trustDomain: TD,
          store,
          ca: dev.ca,
          clock,
          random: testRandom(`restart-${i}`),
          methods: { joinToken: { enabled: true } },
          rateLimit: RELAXED,
          pruneIntervalMs: 7 * 86_400_000,
        }),
      );
    }
    const [a, b] = replicas as [Issuer, Issuer];
    const one = await enroll(a, b, 'gw-x1');
    const two = await enroll(b, a, 'gw-x2');
    await cluster.restart();
    // Right after the restart, before B's listener is back: only the resync can tell B.
    const { sequence } = await afterOutage(() =>
      a.revoke('spiffe-id', `spiffe://${TD}/gateway/gw-x1`, 'test'),
    );
    await within(b.whenRevocationSeen(sequence), 10_000, 'revocation after the restart seen by B');
    await rejects(() => afterOutage(() => b.renewBegin(one.peer)), 'ERR_ISSUER_REVOKED');
    const renewed = await afterOutage(async () => {
      const rb = await b.renewBegin(two.peer);
      return b.renewFinish({ sessionId: rb.sessionId, csr: keyAndCsr().csr }, two.peer);
    });
    assert.is(renewed.spiffeId, `spiffe://${TD}/gateway/gw-x2`);
    assert.equal(await afterOutage(() => a.readiness()), []);
    assert.equal(await afterOutage(() => b.readiness()), []);
  } finally {
    await Promise.all(replicas.map((r) => r.close()));
    await Promise.all(stores.map((s) => s.close()));
    await cluster.stop();
  }
});

test('with the database gone, every replica reports not ready with the reason, and refuses with 503 codes', async () => {
  const cluster = await startPostgres();
  const stores: IssuerStore[] = [];
  const replicas: Issuer[] = [];
  try {
    await cluster.sql('CREATE DATABASE replicas_gone');
    const url = cluster.url('replicas_gone');
    await migratePostgresStore({ url });
    const clock = new VirtualClock(Date.now());
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dev = await createDevIssuerFiles(join(mkdtempSync(join(tmpdir(), 'replicas-')), 'dev'), {
      trustDomain: TD,
      clock,
      random: testRandom('gone-dev'),
    });
    for (let i = 0; i < 2; i++) {
      const store = await openPostgresStore({ url, poolSize: 2 });
      stores.push(store);
      replicas.push(
        await Issuer.create({
          trustDomain: TD,
          store,
          ca: dev.ca,
          clock,
          random: testRandom(`gone-${i}`),
          methods: { joinToken: { enabled: true } },
          rateLimit: RELAXED,
          pruneIntervalMs: 7 * 86_400_000,
        }),
      );
    }
    for (const r of replicas) assert.equal(await r.readiness(), []);
    await cluster.stop();
    for (const r of replicas) {
      const reasons = await r.readiness();
      assert.ok(
        reasons.some((x) => x.startsWith('store: ERR_ISSUER_STORE_UNAVAILABLE')),
        reasons.join('; '),
      );
      await rejects(() => r.createJoinToken('gw-z', 60_000), 'ERR_ISSUER_STORE_UNAVAILABLE');
    }
  } finally {
    await Promise.all(replicas.map((r) => r.close()));
    await Promise.all(stores.map((s) => s.close()));
    await cluster.stop();
  }
});

test.run();
