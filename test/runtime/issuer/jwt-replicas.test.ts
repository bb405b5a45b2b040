/**
 * JWT-SVID signing keys with replicas on one PostgreSQL database (throw-away cluster,
 * test/helpers/postgres.ts): a `jwt rotate` on one replica is applied by the others through the
 * store's notification (LISTEN), so every replica signs with the new key and publishes the same
 * bundle, with the retired key kept; two replicas starting at once on an empty store agree on
 * one active key. Replicas with different `jwtSvid.ttl`s (on PostgreSQL and on LevelDB): a key
 * retired by the one with the short ttl stays published as long as a token the other signed
 * with it lives.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createDevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { Issuer } from '../../../runtime/issuer/issuer.ts';
import { JWT_KEYS_KEY, JWT_RETIRE_SKEW_MS } from '../../../runtime/issuer/jwt-keys.ts';
import type { IssuerStore } from '../../../runtime/issuer/store.ts';
import { openLevelStore } from '../../../runtime/issuer/store-level.ts';
import { migratePostgresStore, openPostgresStore } from '../../../runtime/issuer/store-postgres.ts';
import { decodeBundle } from '../../../runtime/svid/bundle.ts';
import { softwareCaKey } from '../../../runtime/svid/ca-key.ts';
import { jwkThumbprint } from '../../../runtime/svid/jwt-svid.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { stopTestCluster, testDatabase } from '../../helpers/postgres.ts';
import { testRandom } from '../../helpers/seed.ts';
import { keyAndCsr, TD } from './harness.ts';

const RELAXED = { perAddress: 1_000_000, perGateway: 1_000_000, windowMs: 60_000 };
const keyA = softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
const keyB = softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
const kidA = jwkThumbprint(keyA.publicKey);
const kidB = jwkThumbprint(keyB.publicKey);

test.after(() => stopTestCluster());

test('jwt rotate on one replica: the other signs with the new key at once; both publish the same bundle', async () => {
  const db = await testDatabase('jwtkeys');
  await migratePostgresStore({ url: db.url });
  const clock = new VirtualClock(Date.now());
  const dev = await createDevIssuerFiles(join(mkdtempSync(join(tmpdir(), 'jwt-replicas-')), 'dev'), {
    trustDomain: TD,
    clock,
    random: testRandom('jwt-dev'),
  });
  const stores = [
    await openPostgresStore({ url: db.url, poolSize: 4 }),
    await openPostgresStore({ url: db.url, poolSize: 4 }),
  ];
  // Both start at once on an empty store: one of them writes the state, the other adopts it.
  const [a, b] = (await Promise.all(
    stores.map((store, i) =>
      Issuer.create({
        trustDomain: TD,
        store,
        ca: dev.ca,
        clock,
        random: testRandom(`jwt-replica-${i}`),
        methods: { joinToken: { enabled: true } },
        rateLimit: RELAXED,
        pruneIntervalMs: 7 * 86_400_000,
        jwtSvid: { key: keyA, next: keyB },
      }),
    ),
  )) as [Issuer, Issuer];
  try {
    const ctx = { address: '10.0.0.1' };
    const token = await a.createJoinToken('gw-j', 600_000);
    const begin = await a.attestBegin({ method: 'join-token', token }, ctx);
    const id = await b.attestFinish(
      { method: 'join-token', sessionId: begin.sessionId, csr: keyAndCsr().csr, caCsr: keyAndCsr().csr },
      ctx,
    );
    const peer = { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array };
    const req = { spiffeId: `${id.spiffeId}/workload/w`, audience: ['x'] };
    assert.is(decodeProtectedHeader((await b.jwtSvid(req, peer)).token).kid, kidA);
    assert.equal(
      decodeBundle(a.bundle().json)
        .jwtKeys.map((k) => k.kid)
        .sort(),
      [kidA, kidB].sort(),
    );
    assert.is(a.bundle().sequence, b.bundle().sequence);
    await a.rotateJwtKey('test');
    const seq = a.bundle().sequence;
    // b learns it from the notification (its poll is 30 s of a virtual clock that does not move).
    await b.whenBundleSequence(seq);
    assert.is(decodeProtectedHeader((await b.jwtSvid(req, peer)).token).kid, kidB);
    assert.is(b.bundle().json, a.bundle().json);
    assert.equal(
      decodeBundle(b.bundle().json)
        .jwtKeys.map((k) => k.kid)
        .sort(),
      [kidA, kidB].sort(),
    );
  } finally {
    await a.close();
    await b.close();
    await Promise.all(stores.map((s) => s.close()));
  }
});

/** R1 (ttl 1 min) rotates; R2 (ttl 1 h) signed with the old key just before: it stays published an hour. */
async function differentTtls(stores: [IssuerStore, IssuerStore], dir: string): Promise<void> {
  const clock = new VirtualClock(Date.now());
  const dev = await createDevIssuerFiles(join(dir, 'dev'), {
    trustDomain: TD,
    clock,
    random: testRandom('ttl-dev'),
  });
  const open = (store: IssuerStore, i: number, ttlMs: number) =>
    Issuer.create({
      trustDomain: TD,
      store,
      ca: dev.ca,
      clock,
      random: testRandom(`ttl-replica-${i}`),
      methods: { joinToken: { enabled: true } },
      rateLimit: RELAXED,
      pruneIntervalMs: 7 * 86_400_000,
      jwtSvid: { key: keyA, next: keyB, ttlMs },
    });
  const short = await open(stores[0], 0, 60_000);
  const long = await open(stores[1], 1, 3_600_000);
  try {
    const ctx = { address: '10.0.0.2' };
    const token = await short.createJoinToken('gw-ttl', 600_000);
    const begin = await short.attestBegin({ method: 'join-token', token }, ctx);
    const id = await short.attestFinish(
      { method: 'join-token', sessionId: begin.sessionId, csr: keyAndCsr().csr, caCsr: keyAndCsr().csr },
      ctx,
    );
    const peer = { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array };
    const req = { spiffeId: `${id.spiffeId}/workload/w`, audience: ['x'] };
    const jwt = await long.jwtSvid(req, peer);
    assert.is(
      jwt.expiresAt,
      Math.floor((clock.now() + 3_600_000) / 1000) * 1000,
      'the long replica signs for an hour',
    );
    const shortJwt = await short.jwtSvid(req, peer);
    assert.is(shortJwt.expiresAt, Math.floor((clock.now() + 60_000) / 1000) * 1000);
    await short.rotateJwtKey('test');
    const state = (await stores[0].get(JWT_KEYS_KEY)) as { retired: { kid: string; until: number }[] };
    assert.equal(
      state.retired.map((r) => [r.kid, r.until]),
      [[kidA, clock.now() + 3_600_000 + JWT_RETIRE_SKEW_MS]],
      'retired for the longest lifetime any holder signs with, not the rotating replica ttl',
    );
    await long.whenBundleSequence(short.bundle().sequence);
    const verifyAt = (issuer: Issuer) =>
      jwtVerify(
        jwt.token,
        createLocalJWKSet({
          keys: decodeBundle(issuer.bundle().json).jwtKeys.map((k) => ({ ...k.jwk, kid: k.kid })),
        }),
        { audience: 'x', currentDate: new Date(clock.now()) },
      );
    // Half an hour on (the short ttl's retirement would have dropped the key after 2 minutes).
    await clock.advance(30 * 60_000);
    for (const issuer of [short, long]) {
      assert.equal(
        decodeBundle(issuer.bundle().json)
          .jwtKeys.map((k) => k.kid)
          .sort(),
        [kidA, kidB].sort(),
      );
      assert.is((await verifyAt(issuer)).payload.sub, req.spiffeId);
    }
    await clock.advance(30 * 60_000 + JWT_RETIRE_SKEW_MS);
    for (const issuer of [short, long])
      assert.equal(
        decodeBundle(issuer.bundle().json).jwtKeys.map((k) => k.kid),
        [kidB],
      );
  } finally {
    await short.close();
    await long.close();
  }
}

test('different ttls on PostgreSQL: a retired key stays published for the longest token lifetime', async () => {
  const db = await testDatabase('jwtttl');
  await migratePostgresStore({ url: db.url });
  const stores = [
    await openPostgresStore({ url: db.url, poolSize: 4 }),
    await openPostgresStore({ url: db.url, poolSize: 4 }),
  ] as [IssuerStore, IssuerStore];
  try {
    await differentTtls(stores, mkdtempSync(join(tmpdir(), 'jwt-ttl-pg-')));
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
});

test('different ttls on LevelDB: a retired key stays published for the longest token lifetime', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'jwt-ttl-level-'));
  const store = await openLevelStore(join(dir, 'store'));
  try {
    await differentTtls([store, store], dir);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
