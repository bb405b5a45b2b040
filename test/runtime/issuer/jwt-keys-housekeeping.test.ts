/**
 * The JWT-SVID key state's housekeeping (`jwt-key-state.ts`), on the virtual clock with replicas
 * sharing one store: a retired key leaves the store record (and the bundle, with a new sequence)
 * when it lapses, without another key change or a prune; a replica configured with a JWT key
 * that cannot sign with the active one is not ready (`jwt-signer: ERR_ISSUER_JWT_KEY`) and its
 * metrics say so; with `jwtSvid` removed from every replica the active key stays published (its
 * tokens still verify), /v1/jwt-svid is a typed 503, and once its lease lapsed the key retires
 * and then leaves the bundle.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createDevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { JWT_RETIRE_SKEW_MS } from '../../../runtime/issuer/jwt-key-state.ts';
import { JWT_KEYS_KEY } from '../../../runtime/issuer/jwt-keys.ts';
import type { IssuerStore } from '../../../runtime/issuer/store.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { openLevelStore } from '../../../runtime/issuer/store-level.ts';
import { decodeBundle } from '../../../runtime/svid/bundle.ts';
import { softwareCaKey } from '../../../runtime/svid/ca-key.ts';
import { jwkThumbprint } from '../../../runtime/svid/jwt-svid.ts';
import type {
  AttestBeginResponse,
  IssuedIdentity,
  JwtSvidResponse,
} from '../../../runtime/upstream/protocol.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { rejects } from '../../helpers/rejects.ts';
import { testRandom } from '../../helpers/seed.ts';
import { errorCode, type Harness, harness, keyAndCsr, TD } from './harness.ts';

const keyA = softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
const keyB = softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
const kidA = jwkThumbprint(keyA.publicKey);
const kidB = jwkThumbprint(keyB.publicKey);
const TTL = 5 * 60_000;
/** The keys' poll (30 s) times the lease's polls (10). */
const LEASE = 300_000;
const RELAXED = { perAddress: 100_000, perGateway: 100_000, windowMs: 60_000 };

const httpGet = (url: string): Promise<{ status: number; text: string }> =>
  new Promise((resolve, reject) => {
    get(url, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    }).on('error', reject);
  });

interface StoredState {
  sequence: number;
  active?: { kid: string; heldUntil?: number; ttlMs?: number };
  retired: { kid: string; until: number }[];
}
const stored = async (store: IssuerStore) => (await store.get<StoredState>(JWT_KEYS_KEY)) as StoredState;
const published = (h: Harness) =>
  decodeBundle(h.running.issuer.bundle().json)
    .jwtKeys.map((k) => k.kid)
    .sort();
const metric = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);

/** Replicas of one issuer (one dev CA) on one store (in memory, or LevelDB where the replicas restart) and clock, each with its own health listener. */
async function replicas(
  configs: ({ key: typeof keyA; next?: typeof keyA } | undefined)[],
  /** On disk (LevelDB), so `restart` can open it again; otherwise in memory (no I/O threads between virtual timers). */
  persistent = false,
) {
  const clock = new VirtualClock(Date.now());
  const dir = mkdtempSync(join(tmpdir(), 'jwt-housekeeping-'));
  const storeDir = join(dir, 'store');
  let store = persistent ? await openLevelStore(storeDir) : await openMemoryStore();
  const dev = await createDevIssuerFiles(join(dir, 'dev'), {
    trustDomain: TD,
    clock,
    random: testRandom('d'),
  });
  const start = (c: (typeof configs)[number], seed: string) =>
    harness(
      { joinToken: { enabled: true } },
      {
        store,
        rateLimit: RELAXED,
        health: { host: '127.0.0.1', port: 0 },
        ...(c === undefined ? {} : { jwtSvid: c }),
      },
      { clock, dev, seed },
    );
  const hs: Harness[] = [];
  for (const [i, c] of configs.entries()) hs.push(await start(c, `replica-${i}`));
  return {
    get store() {
      return store;
    },
    clock,
    hs,
    start,
    /** Every replica stops (closing the store); the store is opened again for `start`. */
    async restart() {
      for (const h of hs.splice(0)) await h.running.close();
      store = await openLevelStore(storeDir);
    },
    close: async () => {
      await Promise.all(hs.map((h) => h.running.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function enroll(h: Harness, name: string) {
  const token = await h.running.issuer.createJoinToken(name, 600_000);
  const b = (await h.call('POST', '/v1/attest/begin', { method: 'join-token', token }))
    .body as AttestBeginResponse;
  const k = keyAndCsr();
  const fin = await h.call('POST', '/v1/attest/finish', {
    method: 'join-token',
    sessionId: b.sessionId,
    csr: k.csr,
    caCsr: keyAndCsr().csr,
  });
  assert.is(fin.status, 200, fin.text);
  const id = fin.body as IssuedIdentity;
  return { id, peer: { cert: id.svidChain[0] as Uint8Array, key: k.key } };
}

test('a retired key leaves the store record and the bundle (new sequence) when it lapses, with no other change', async () => {
  const r = await replicas([{ key: keyA, next: keyB }]);
  const [h] = r.hs as [Harness];
  try {
    await h.running.issuer.rotateJwtKey('test');
    const s0 = await stored(r.store);
    const until = s0.retired.find((x) => x.kid === kidA)?.until as number;
    assert.is(until, r.clock.now() + TTL + JWT_RETIRE_SKEW_MS);
    const seq0 = h.running.issuer.bundle().sequence;
    await r.clock.advance(until - r.clock.now() - 1);
    assert.equal(
      (await stored(r.store)).retired.map((x) => x.kid),
      [kidA],
      'kept until it lapses',
    );
    assert.equal(published(h), [kidA, kidB].sort());
    await r.clock.advance(1);
    // The tick at the lapse writes the record; the bundle's sequence tells when it is applied.
    await h.running.issuer.whenBundleSequence(seq0 + 1);
    const s1 = await stored(r.store);
    assert.equal(s1.retired, [], 'dropped from the record at its lapse, not at the next key change');
    assert.is(s1.active?.kid, kidB);
    assert.is(s1.sequence, s0.sequence + 1);
    assert.ok(h.running.issuer.bundle().sequence > seq0, 'the bundle sequence moves: agents drop the key');
    assert.equal(published(h), [kidB]);
  } finally {
    await r.close();
  }
});

test('readyz: a replica with jwtSvid that cannot sign with the active key is 503 jwt-signer ERR_ISSUER_JWT_KEY', async () => {
  // The first replica has the next key, the second was not given it.
  const r = await replicas([{ key: keyA, next: keyB }, { key: keyA }]);
  const [h1, h2] = r.hs as [Harness, Harness];
  try {
    const url = h2.running.healthUrl as string;
    assert.equal(await httpGet(`${url}/readyz`), { status: 200, text: 'ready\n' });
    assert.is(metric((await httpGet(`${url}/metrics`)).text, 'edgeward_issuer_jwt_signing'), 1);
    await h1.running.issuer.rotateJwtKey('test');
    await h2.running.issuer.whenBundleSequence(h1.running.issuer.bundle().sequence);
    const ready = await httpGet(`${url}/readyz`);
    assert.is(ready.status, 503);
    assert.match(ready.text, new RegExp(`^jwt-signer: ERR_ISSUER_JWT_KEY .*kid ${kidB}`, 'm'));
    const m = (await httpGet(`${url}/metrics`)).text;
    assert.is(metric(m, 'edgeward_issuer_jwt_signing'), 0);
    assert.is(metric(m, 'edgeward_issuer_jwt_key_active'), 1);
    assert.is(metric(m, 'edgeward_issuer_ready'), 0);
    // The replica with the key is ready and signs.
    assert.equal(await httpGet(`${h1.running.healthUrl}/readyz`), { status: 200, text: 'ready\n' });
    const gw = await enroll(h2, 'gw-ready');
    const body = { spiffeId: `${gw.id.spiffeId}/workload/w`, audience: ['x'] };
    const refused = await h2.call('POST', '/v1/jwt-svid', body, gw.peer);
    assert.is(refused.status, 503);
    assert.is(errorCode(refused.body), 'ERR_ISSUER_JWT_KEY');
    const ok = await h1.call('POST', '/v1/jwt-svid', body, gw.peer);
    assert.is(decodeProtectedHeader((ok.body as JwtSvidResponse).token).kid, kidB);
  } finally {
    await r.close();
  }
});

test('jwtSvid removed from every replica: published until its tokens expired, tokens refused (503), then gone', async () => {
  const r = await replicas([{ key: keyA }], true);
  const [h1] = r.hs as [Harness];
  const gw = await enroll(h1, 'gw-removed');
  const body = { spiffeId: `${gw.id.spiffeId}/workload/w`, audience: ['x'] };
  const issued = await h1.call('POST', '/v1/jwt-svid', body, gw.peer);
  const { token } = issued.body as JwtSvidResponse;
  const heldUntil = (await stored(r.store)).active?.heldUntil as number;
  assert.ok(heldUntil > r.clock.now());
  await r.restart();
  // The replicas come back without jwtSvid.
  const h2 = await r.start(undefined, 'keyless');
  r.hs.push(h2);
  const verify = () =>
    jwtVerify(
      token,
      createLocalJWKSet({
        keys: decodeBundle(h2.running.issuer.bundle().json).jwtKeys.map((k) => ({ ...k.jwk, kid: k.kid })),
      }),
      { audience: 'x', currentDate: new Date(r.clock.now()) },
    );
  try {
    const url = h2.running.healthUrl as string;
    assert.equal(published(h2), [kidA], 'still published: its tokens must verify');
    await verify();
    const refused = await h2.call('POST', '/v1/jwt-svid', body, gw.peer);
    assert.is(refused.status, 503);
    assert.is(errorCode(refused.body), 'ERR_ISSUER_JWT_KEY');
    // A replica without jwtSvid serves X.509 and is ready; the metrics show nobody signs.
    assert.is((await httpGet(`${url}/readyz`)).status, 200);
    let m = (await httpGet(`${url}/metrics`)).text;
    assert.is(metric(m, 'edgeward_issuer_jwt_key_active'), 1);
    assert.is(metric(m, 'edgeward_issuer_jwt_signing'), 0);
    // Nobody extends the lease: at its end the key retires, published until the last token it
    // could have signed (at the lease's end) expired.
    const seq = h2.running.issuer.bundle().sequence;
    await r.clock.advance(heldUntil - r.clock.now());
    await h2.running.issuer.whenBundleSequence(seq + 1);
    const s = await stored(r.store);
    assert.is(s.active, undefined);
    assert.equal(
      s.retired.map((x) => [x.kid, x.until]),
      [[kidA, heldUntil + TTL + JWT_RETIRE_SKEW_MS]],
    );
    m = (await httpGet(`${url}/metrics`)).text;
    assert.is(metric(m, 'edgeward_issuer_jwt_key_active'), 0);
    assert.is(metric(m, 'edgeward_issuer_jwt_keys_published'), 1);
    const none = await h2.call('POST', '/v1/jwt-svid', body, gw.peer);
    assert.is(errorCode(none.body), 'ERR_ISSUER_JWT_KEY');
    await r.clock.advance(TTL + JWT_RETIRE_SKEW_MS);
    await h2.running.issuer.whenBundleSequence(seq + 2);
    assert.equal(published(h2), []);
    assert.equal((await stored(r.store)).retired, []);
    await rejects(verify, 'ERR_JWKS_NO_MATCHING_KEY');
  } finally {
    await r.close();
  }
});

test('a holder extends the lease while it runs: the active key never retires under a live replica', async () => {
  const r = await replicas([{ key: keyA }, undefined]);
  const [h1, h2] = r.hs as [Harness, Harness];
  try {
    for (let i = 0; i < 30; i++) await r.clock.advance(LEASE / 10);
    const s = await stored(r.store);
    assert.is(s.active?.kid, kidA);
    assert.ok((s.active?.heldUntil as number) > r.clock.now());
    assert.equal(published(h2), [kidA]);
    assert.is((await httpGet(`${h1.running.healthUrl}/readyz`)).status, 200);
  } finally {
    await r.close();
  }
});

test('a clock step past the lease (no tick ran: a suspended process, an NTP step): the holder renews it on demand and stays ready', async () => {
  const r = await replicas([{ key: keyA }, undefined]);
  const [h1] = r.hs as [Harness, Harness];
  try {
    r.clock.set(r.clock.now() + 2 * LEASE); // timers keep their remaining delay: none fires
    assert.is((await httpGet(`${h1.running.healthUrl}/readyz`)).status, 200);
    const s = await stored(r.store);
    assert.is(s.active?.kid, kidA);
    assert.ok((s.active?.heldUntil as number) > r.clock.now());
    assert.is(s.retired.length, 0);
  } finally {
    await r.close();
  }
});

test.run();
