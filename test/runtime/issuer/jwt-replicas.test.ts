/**
 * JWT-SVID signing keys with replicas on one PostgreSQL database (throw-away cluster,
 * test/helpers/postgres.ts): a `jwt rotate` on one replica is applied by the others through the
 * store's notification (LISTEN), so every replica signs with the new key and publishes the same
 * bundle, with the retired key kept; two replicas starting at once on an empty store agree on
 * one active key.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader } from 'jose';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createDevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { Issuer } from '../../../runtime/issuer/issuer.ts';
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

test.run();
