/**
 * JWT-SVIDs from the issuer (issue 18 item 4): a gateway asks over mTLS for a token for one of
 * its own workloads; the token validates with `jose` against the bundle's JWKS (`use:
 * "jwt-svid"`, by `kid`) and fails for another audience and after `exp` (virtual clock); the
 * header and claims follow the JWT-SVID rules. Refusals: another gateway's workload or any other
 * path (ERR_ISSUER_JWT_SCOPE, 403), no gateway SVID, a bad audience, the rate limit, no key.
 * Rotation: the next key is published before it signs; the retired key stays published until
 * its tokens expired; a second replica on the same store follows a rotation done on the first.
 */
import { generateKeyPairSync } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createDevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { Issuer } from '../../../runtime/issuer/issuer.ts';
import { JWT_RETIRE_SKEW_MS } from '../../../runtime/issuer/jwt-keys.ts';
import { decodeBundle } from '../../../runtime/svid/bundle.ts';
import { softwareCaKey } from '../../../runtime/svid/ca-key.ts';
import { jwkThumbprint } from '../../../runtime/svid/jwt-svid.ts';
import type {
  AttestBeginResponse,
  IssuedIdentity,
  JwtSvidResponse,
} from '../../../runtime/upstream/protocol.ts';
import { rejects } from '../../helpers/rejects.ts';
import { testRandom } from '../../helpers/seed.ts';
import { errorCode, type Harness, harness, keyAndCsr, TD } from './harness.ts';

const keyA = softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
const keyB = softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
const kidA = jwkThumbprint(keyA.publicKey);
const kidB = jwkThumbprint(keyB.publicKey);
const TTL = 5 * 60_000;

let h: Harness;
test.before(async () => {
  h = await harness(
    { joinToken: { enabled: true } },
    {
      rateLimit: { perAddress: 1000, perGateway: 1000, windowMs: 60_000 },
      jwtSvid: { key: keyA, next: keyB, perGateway: 5 },
    },
  );
});
test.after(async () => {
  await h.running.close();
  rmSync(h.dir, { recursive: true, force: true });
});

async function enroll(name: string) {
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

const gwA = () => enroll(`gw-a${Math.floor(Math.random() * 1e9)}`);
const wl = (gw: string, name: string) => `spiffe://${TD}/gateway/${gw}/workload/${name}`;

function jwks() {
  const b = decodeBundle(h.running.issuer.bundle().json);
  return { bundle: b, set: createLocalJWKSet({ keys: b.jwtKeys.map((k) => ({ ...k.jwk, kid: k.kid })) }) };
}

test('a token for its own workload validates with jose against the bundle; another audience and exp fail', async () => {
  const gw = await gwA();
  const sub = `${gw.id.spiffeId}/workload/adapter`;
  const r = await h.call('POST', '/v1/jwt-svid', { spiffeId: sub, audience: ['api.example', 'b'] }, gw.peer);
  assert.is(r.status, 200, r.text);
  const { token, expiresAt } = r.body as JwtSvidResponse;
  // JWT-SVID rules: header only alg, kid, typ; claims sub, aud, exp, iat.
  assert.equal(decodeProtectedHeader(token), { alg: 'ES256', kid: kidA, typ: 'JWT' });
  const claims = decodeJwt(token);
  assert.equal(Object.keys(claims).sort(), ['aud', 'exp', 'iat', 'sub']);
  assert.is(claims.sub, sub);
  assert.equal(claims.aud, ['api.example', 'b']);
  assert.is((claims.exp as number) - (claims.iat as number), TTL / 1000);
  assert.is(expiresAt, (claims.exp as number) * 1000);
  const { bundle, set } = jwks();
  assert.equal(bundle.jwtKeys.map((k) => k.kid).sort(), [kidA, kidB].sort(), 'active and next are published');
  const raw = JSON.parse(h.running.issuer.bundle().json) as { keys: { use: string; kid?: string }[] };
  assert.ok(raw.keys.some((k) => k.use === 'jwt-svid' && k.kid === kidA));
  const now = new Date(h.clock.now());
  const ok = await jwtVerify(token, set, {
    audience: 'api.example',
    currentDate: now,
    algorithms: ['ES256'],
  });
  assert.is(ok.payload.sub, sub);
  await rejects(
    () => jwtVerify(token, set, { audience: 'other', currentDate: now }),
    'ERR_JWT_CLAIM_VALIDATION_FAILED',
  );
  await h.clock.advance(TTL + 1000);
  await rejects(
    () => jwtVerify(token, set, { audience: 'api.example', currentDate: new Date(h.clock.now()) }),
    'ERR_JWT_EXPIRED',
  );
  const audit = (await h.running.issuer.auditEvents()).filter((e) => e.event === 'jwt' && e.spiffeId === sub);
  assert.is(audit.length, 1);
  assert.is(audit[0]?.gateway, gw.id.spiffeId.split('/').pop());
});

test('path scoping: another gateway, a device, a nested path, the gateway itself → ERR_ISSUER_JWT_SCOPE (403)', async () => {
  const a = await gwA();
  const b = await gwA();
  const bName = b.id.spiffeId.split('/').pop() as string;
  for (const spiffeId of [
    wl(bName, 'adapter'),
    `${a.id.spiffeId}/device/d1`,
    `${a.id.spiffeId}/workload/x/y`,
    `${a.id.spiffeId}/workload/..`,
    a.id.spiffeId,
    `spiffe://other.example/gateway/${a.id.spiffeId.split('/').pop()}/workload/w`,
  ]) {
    const r = await h.call('POST', '/v1/jwt-svid', { spiffeId, audience: ['x'] }, a.peer);
    assert.is(r.status, 403, spiffeId);
    assert.is(errorCode(r.body), 'ERR_ISSUER_JWT_SCOPE', spiffeId);
  }
  const refused = (await h.running.issuer.auditEvents()).filter(
    (e) => e.event === 'refuse' && e.code === 'ERR_ISSUER_JWT_SCOPE',
  );
  assert.ok(refused.length >= 6, 'every refusal is audited');
});

test('bad requests: no gateway SVID, empty/oversized/duplicate audience, no spiffeId', async () => {
  const gw = await gwA();
  const sub = `${gw.id.spiffeId}/workload/w`;
  const noCert = await h.call('POST', '/v1/jwt-svid', { spiffeId: sub, audience: ['x'] });
  assert.is(errorCode(noCert.body), 'ERR_ISSUER_CLIENT_CERT');
  for (const body of [
    { spiffeId: sub, audience: [] },
    { spiffeId: sub, audience: Array.from({ length: 17 }, (_, i) => `a${i}`) },
    { spiffeId: sub, audience: ['x'.repeat(257)] },
    { spiffeId: sub, audience: ['a', 'a'] },
    { spiffeId: sub, audience: ['a\nb'] },
    { spiffeId: sub, audience: 'x' },
    { audience: ['x'] },
  ]) {
    const r = await h.call('POST', '/v1/jwt-svid', body, gw.peer);
    assert.is(r.status, 400, JSON.stringify(body));
    assert.is(errorCode(r.body), 'ERR_ISSUER_BAD_REQUEST');
  }
});

test('rate limited per gateway in its own bucket (jwtSvid.perGateway)', async () => {
  const gw = await gwA();
  const body = { spiffeId: `${gw.id.spiffeId}/workload/w`, audience: ['x'] };
  for (let i = 0; i < 5; i++) assert.is((await h.call('POST', '/v1/jwt-svid', body, gw.peer)).status, 200);
  const r = await h.call('POST', '/v1/jwt-svid', body, gw.peer);
  assert.is(r.status, 429);
  assert.is(errorCode(r.body), 'ERR_ISSUER_RATE_LIMITED');
});

test('rotation on one replica: the next key signs on both; the old key stays published until its tokens expired', async () => {
  const gw = await gwA();
  const sub = `${gw.id.spiffeId}/workload/rot`;
  const ctx = { address: '10.0.0.9', peerCertificate: gw.peer.cert };
  const dev = await createDevIssuerFiles(join(h.dir, 'dev'), {
    trustDomain: TD,
    clock: h.clock,
    random: testRandom('r'),
  });
  // A second replica on the same store holding both keys, and a third holding no JWT key.
  const replica = await Issuer.create({
    trustDomain: TD,
    store: h.store,
    ca: dev.ca,
    clock: h.clock,
    random: testRandom('replica'),
    methods: { joinToken: { enabled: true } },
    jwtSvid: { key: keyA, next: keyB },
  });
  const keyless = await Issuer.create({
    trustDomain: TD,
    store: h.store,
    ca: dev.ca,
    clock: h.clock,
    random: testRandom('keyless'),
    methods: { joinToken: { enabled: true } },
  });
  try {
    assert.equal(
      decodeBundle(keyless.bundle().json)
        .jwtKeys.map((k) => k.kid)
        .sort(),
      [kidA, kidB].sort(),
    );
    await rejects(() => keyless.jwtSvid({ spiffeId: sub, audience: ['x'] }, ctx), 'ERR_ISSUER_JWT_KEY');
    const oldToken = (await replica.jwtSvid({ spiffeId: sub, audience: ['y'] }, ctx)).token;
    assert.is(decodeProtectedHeader(oldToken).kid, kidA);
    const seq0 = h.running.issuer.bundle().sequence;
    const r = await h.running.issuer.rotateJwtKey('test');
    assert.equal(r, { kid: kidB, retired: kidA });
    const seq1 = h.running.issuer.bundle().sequence;
    assert.ok(seq1 > seq0, 'the bundle sequence moves with a key change');
    await replica.whenBundleSequence(seq1);
    assert.is(replica.bundle().json, h.running.issuer.bundle().json, 'both replicas publish the same bundle');
    const after = await replica.jwtSvid({ spiffeId: sub, audience: ['x'] }, ctx);
    assert.is(decodeProtectedHeader(after.token).kid, kidB, 'the other replica signs with the new key');
    // The token signed by the retired key still validates against the bundle.
    await jwtVerify(oldToken, jwks().set, { audience: 'y', currentDate: new Date(h.clock.now()) });
    // No next key any more: a second rotation is refused.
    await rejects(() => h.running.issuer.rotateJwtKey('test'), 'ERR_ISSUER_JWT_KEY');
    await h.clock.advance(TTL + JWT_RETIRE_SKEW_MS + 1000);
    assert.equal(
      jwks().bundle.jwtKeys.map((k) => k.kid),
      [kidB],
      'the retired key leaves once its tokens have expired',
    );
    await rejects(
      () => jwtVerify(oldToken, jwks().set, { audience: 'y', currentDate: new Date(h.clock.now()) }),
      'ERR_JWKS_NO_MATCHING_KEY',
    );
  } finally {
    await replica.close();
    await keyless.close();
  }
});

test('a key that is not P-256 is refused at start (ERR_ISSUER_JWT_KEY)', async () => {
  const rsa = softwareCaKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
  const dev = await createDevIssuerFiles(join(h.dir, 'dev'), {
    trustDomain: TD,
    clock: h.clock,
    random: testRandom('r'),
  });
  await rejects(
    () =>
      Issuer.create({
        trustDomain: TD,
        store: h.store,
        ca: dev.ca,
        clock: h.clock,
        random: testRandom('rsa'),
        methods: {},
        jwtSvid: { key: rsa },
      }),
    'ERR_ISSUER_JWT_KEY',
  );
});

test.run();
