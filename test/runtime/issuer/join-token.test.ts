import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeBundle } from '../../../runtime/svid/bundle.ts';
import type {
  AttestBeginResponse,
  IssuedIdentity,
  RevocationFeed,
} from '../../../runtime/upstream/protocol.ts';
import { errorCode, type Harness, harness, keyAndCsr, TD } from './harness.ts';

let h: Harness;
test.before(async () => {
  h = await harness({ joinToken: { enabled: true } });
});
test.after(async () => {
  await h.running.close();
  rmSync(h.dir, { recursive: true, force: true });
});

const pem = (der: Uint8Array): string => new X509Certificate(Buffer.from(der)).toString();

async function enroll(name: string): Promise<{ id: IssuedIdentity; key: ReturnType<typeof keyAndCsr> }> {
  const token = await h.running.issuer.createJoinToken(name, 600_000);
  const begin = await h.call('POST', '/v1/attest/begin', { method: 'join-token', token });
  assert.is(begin.status, 200, begin.text);
  const b = begin.body as AttestBeginResponse;
  const k = keyAndCsr();
  const ca = keyAndCsr();
  const fin = await h.call('POST', '/v1/attest/finish', {
    method: 'join-token',
    sessionId: b.sessionId,
    csr: k.csr,
    caCsr: ca.csr,
  });
  assert.is(fin.status, 200, fin.text);
  return { id: fin.body as IssuedIdentity, key: k };
}

test('join-token end to end over HTTPS: SVID and delegated CA pass openssl verify', async () => {
  const { id } = await enroll('gw-1');
  assert.is(id.spiffeId, `spiffe://${TD}/gateway/gw-1`);
  const dir = h.dir;
  writeFileSync(join(dir, 'root.pem'), h.caPem);
  writeFileSync(join(dir, 'svid.pem'), pem(id.svidChain[0] as Uint8Array));
  writeFileSync(join(dir, 'dca.pem'), pem(id.deviceCaChain[0] as Uint8Array));
  const at = String(Math.floor(h.clock.now() / 1000));
  for (const f of ['svid.pem', 'dca.pem']) {
    const out = execFileSync(
      'openssl',
      ['verify', '-attime', at, '-CAfile', join(dir, 'root.pem'), join(dir, f)],
      {
        encoding: 'utf8',
      },
    );
    assert.match(out, /OK/);
  }
  const svid = new X509Certificate(Buffer.from(id.svidChain[0] as Uint8Array));
  assert.is(Date.parse(svid.validTo) - h.clock.now() <= 3_600_000, true, 'default TTL 1h');
  const dca = new X509Certificate(Buffer.from(id.deviceCaChain[0] as Uint8Array));
  assert.ok(dca.ca);
  const budget = Date.parse(dca.validTo) - h.clock.now();
  assert.ok(
    budget > 7 * 86_400_000 - 1000 && budget <= 7 * 86_400_000,
    'device CA: the default offline budget, 7d',
  );
  const bundle = decodeBundle(id.bundle);
  assert.is(bundle.roots[0]?.raw.equals(new X509Certificate(h.caPem).raw), true);
  assert.is(bundle.sequence, id.bundleSequence);
});

test('a join token is single use; a replayed finish with another CSR is refused, the same finish answered again; all audited', async () => {
  const token = await h.running.issuer.createJoinToken('gw-2', 600_000);
  const b1 = (await h.call('POST', '/v1/attest/begin', { method: 'join-token', token }))
    .body as AttestBeginResponse;
  const k = keyAndCsr();
  const body = { method: 'join-token', sessionId: b1.sessionId, csr: k.csr, caCsr: keyAndCsr().csr };
  const first = await h.call('POST', '/v1/attest/finish', body);
  assert.is(first.status, 200);
  // The same finish again (its answer lost): the same identity, nothing issued twice.
  const same = await h.call('POST', '/v1/attest/finish', body);
  assert.is(same.status, 200);
  assert.equal(
    Buffer.from((same.body as IssuedIdentity).svidChain[0] as Uint8Array),
    Buffer.from((first.body as IssuedIdentity).svidChain[0] as Uint8Array),
  );
  const replay = await h.call('POST', '/v1/attest/finish', { ...body, csr: keyAndCsr().csr });
  assert.is(replay.status, 409);
  assert.is(errorCode(replay.body), 'ERR_ISSUER_SESSION_UNKNOWN');
  const again = await h.call('POST', '/v1/attest/begin', { method: 'join-token', token });
  assert.is(again.status, 401);
  assert.is(errorCode(again.body), 'ERR_ISSUER_TOKEN_INVALID');
  const events = await h.running.issuer.auditEvents();
  assert.ok(events.some((e) => e.event === 'issue' && e.gateway === 'gw-2' && e.serials?.length === 2));
  assert.is(events.filter((e) => e.event === 'issue' && e.gateway === 'gw-2').length, 1);
  assert.ok(events.some((e) => e.event === 'retry' && e.gateway === 'gw-2'));
  assert.ok(events.some((e) => e.event === 'refuse' && e.code === 'ERR_ISSUER_SESSION_UNKNOWN'));
  assert.ok(events.some((e) => e.event === 'refuse' && e.code === 'ERR_ISSUER_TOKEN_INVALID'));
});

test('expired tokens and expired sessions are refused', async () => {
  const token = await h.running.issuer.createJoinToken('gw-3', 1000);
  await h.clock.advance(2000);
  assert.is(
    errorCode((await h.call('POST', '/v1/attest/begin', { method: 'join-token', token })).body),
    'ERR_ISSUER_TOKEN_INVALID',
  );
  const t2 = await h.running.issuer.createJoinToken('gw-3', 3_600_000);
  const b = (await h.call('POST', '/v1/attest/begin', { method: 'join-token', token: t2 }))
    .body as AttestBeginResponse;
  await h.clock.advance(5 * 60_000 + 1); // past the session TTL, before the next prune
  const fin = await h.call('POST', '/v1/attest/finish', {
    method: 'join-token',
    sessionId: b.sessionId,
    csr: keyAndCsr().csr,
    caCsr: keyAndCsr().csr,
  });
  assert.is(errorCode(fin.body), 'ERR_ISSUER_SESSION_EXPIRED');
});

test('bad input: wrong content type, malformed CBOR, oversized body, wrong shapes, bad CSRs', async () => {
  const ct = await h.call(
    'POST',
    '/v1/attest/begin',
    { method: 'join-token', token: 'x' },
    { contentType: 'application/json' },
  );
  assert.is(ct.status, 415);
  assert.is(errorCode(ct.body), 'ERR_ISSUER_CONTENT_TYPE');
  const garbage = await h.call('POST', '/v1/attest/begin', undefined, {
    raw: Buffer.from([0xff, 0xff, 0x1f]),
  });
  assert.is(garbage.status, 400);
  assert.is(errorCode(garbage.body), 'ERR_ISSUER_BAD_REQUEST');
  const big = await h.call('POST', '/v1/attest/begin', undefined, { raw: Buffer.alloc(70 * 1024) });
  assert.is(big.status, 413);
  assert.is(errorCode(big.body), 'ERR_ISSUER_BODY_TOO_LARGE');
  for (const body of [
    [1, 2],
    { method: 'nope' },
    { method: 'join-token' },
    { method: 'join-token', token: 5 },
  ]) {
    const r = await h.call('POST', '/v1/attest/begin', body);
    assert.is(errorCode(r.body), 'ERR_ISSUER_BAD_REQUEST', JSON.stringify(body));
  }
  const disabled = await h.call('POST', '/v1/attest/begin', {
    method: 'x509pop',
    chain: [new Uint8Array([1])],
  });
  assert.is(disabled.status, 403);
  assert.is(errorCode(disabled.body), 'ERR_ISSUER_METHOD_DISABLED');
  const token = await h.running.issuer.createJoinToken('gw-4', 600_000);
  const b = (await h.call('POST', '/v1/attest/begin', { method: 'join-token', token }))
    .body as AttestBeginResponse;
  const tampered = Buffer.from(keyAndCsr().csr);
  tampered[tampered.length - 2] = (tampered[tampered.length - 2] as number) ^ 0xff;
  const r = await h.call('POST', '/v1/attest/finish', {
    method: 'join-token',
    sessionId: b.sessionId,
    csr: tampered,
    caCsr: keyAndCsr().csr,
  });
  assert.is(r.status, 400);
  assert.is(errorCode(r.body), 'ERR_CSR_SIGNATURE');
  // The failed finish consumed the session but not the token: a new begin works, nothing half-written.
  const b2 = (await h.call('POST', '/v1/attest/begin', { method: 'join-token', token }))
    .body as AttestBeginResponse;
  assert.type(b2.sessionId, 'string');
  const nf = await h.call('GET', '/v1/nothing');
  assert.is(nf.status, 404);
  assert.is(errorCode(nf.body), 'ERR_ISSUER_NOT_FOUND');
});

test('renewal over mTLS with the current SVID; without it, or revoked, it is refused', async () => {
  const { id, key } = await enroll('gw-5');
  const cert = id.svidChain[0] as Uint8Array;
  const noCert = await h.call('POST', '/v1/renew/begin', {});
  assert.is(noCert.status, 401);
  assert.is(errorCode(noCert.body), 'ERR_ISSUER_CLIENT_CERT');
  const rb = await h.call('POST', '/v1/renew/begin', {}, { cert, key: key.key });
  assert.is(rb.status, 200, rb.text);
  const k2 = keyAndCsr();
  const rf = await h.call(
    'POST',
    '/v1/renew/finish',
    { sessionId: (rb.body as { sessionId: string }).sessionId, csr: k2.csr, caCsr: keyAndCsr().csr },
    { cert, key: key.key },
  );
  assert.is(rf.status, 200, rf.text);
  const renewed = rf.body as IssuedIdentity;
  assert.is(renewed.spiffeId, id.spiffeId);
  assert.ok(new X509Certificate(Buffer.from(renewed.svidChain[0] as Uint8Array)).checkPrivateKey(k2.key));
  // nextSessionId from the previous answer works once, without renew/begin.
  const direct = await h.call(
    'POST',
    '/v1/renew/finish',
    { sessionId: renewed.nextSessionId, csr: keyAndCsr().csr, caCsr: keyAndCsr().csr },
    { cert: renewed.svidChain[0] as Uint8Array, key: k2.key },
  );
  assert.is(direct.status, 200, direct.text);
  // Revoke the gateway: renewal refused, the feed carries it, the gateway is disabled.
  const feed0 = (await h.call('GET', '/v1/revocations?since=0')).body as RevocationFeed;
  await h.running.issuer.revoke('spiffe-id', id.spiffeId);
  const feed = (await h.call('GET', `/v1/revocations?since=${feed0.sequence}`)).body as RevocationFeed;
  assert.is(feed.sequence, feed0.sequence + 1);
  assert.equal(
    feed.entries.map((e) => [e.kind, e.value]),
    [['spiffe-id', id.spiffeId]],
  );
  const refused = await h.call(
    'POST',
    '/v1/renew/begin',
    {},
    { cert: renewed.svidChain[0] as Uint8Array, key: k2.key },
  );
  assert.is(refused.status, 403);
  assert.is(errorCode(refused.body), 'ERR_ISSUER_REVOKED');
  const t = await h.running.issuer.createJoinToken('gw-5', 600_000);
  const again = await h.call('POST', '/v1/attest/begin', { method: 'join-token', token: t });
  assert.is(errorCode(again.body), 'ERR_ISSUER_GATEWAY_DISABLED');
  // Entries leave the feed once everything they affect has expired: the gateway's delegated CA
  // (the offline budget, 7d) bounds it. A wall-clock jump, then the prune the timer would run.
  h.clock.set(h.clock.now() + 7 * 86_400_000 + 60_000);
  await h.running.issuer.prune();
  const later = (await h.call('GET', '/v1/revocations?since=0')).body as RevocationFeed;
  assert.is(later.entries.length, 0);
});

test('bundle endpoint serves SPIFFE bundle JSON; CA rotation publishes first, retires later', async () => {
  const r = await h.call('GET', '/v1/bundle');
  assert.is(r.status, 200);
  const b0 = decodeBundle(r.text);
  assert.is(b0.roots.length, 1);
  const { generateKeyPairSync } = await import('node:crypto');
  const { createRootCa } = await import('../../../runtime/svid/authority.ts');
  const { seededRandom } = await import('../../../sim/random.ts');
  const nextKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const nextDer = createRootCa({
    trustDomain: TD,
    privateKey: nextKey,
    notBefore: h.clock.now() - 1000,
    notAfter: h.clock.now() + 400 * 86_400_000,
    random: seededRandom('next'),
    generation: 2,
  });
  await h.running.issuer.prepareCa({ certificate: nextDer, privateKey: nextKey });
  const b1 = decodeBundle((await h.call('GET', '/v1/bundle')).text);
  assert.is(b1.roots.length, 2);
  assert.ok(b1.sequence > b0.sequence);
  const before = await enroll('gw-6');
  assert.ok(
    new X509Certificate(Buffer.from(before.id.svidChain[0] as Uint8Array)).verify(b0.roots[0]!.publicKey),
    'old CA still signs',
  );
  await h.running.issuer.rotateCa();
  const after = await enroll('gw-7');
  assert.ok(
    new X509Certificate(Buffer.from(after.id.svidChain[0] as Uint8Array)).verify(
      new X509Certificate(nextDer).publicKey,
    ),
  );
  const b2 = decodeBundle((await h.call('GET', '/v1/bundle')).text);
  assert.is(b2.roots.length, 2, 'old CA stays while its certificates live');
  // Its certificates may live as long as the longest offline budget (30d, a per-gateway
  // override); the issuer keeps the retired CA that long (a restart forgets what it signed).
  h.clock.set(h.clock.now() + 29 * 86_400_000);
  await h.running.issuer.prune();
  assert.is(decodeBundle((await h.call('GET', '/v1/bundle')).text).roots.length, 2);
  h.clock.set(h.clock.now() + 86_400_000 + 60_000);
  await h.running.issuer.prune();
  const b3 = decodeBundle((await h.call('GET', '/v1/bundle')).text);
  assert.is(b3.roots.length, 1);
  assert.ok(b3.sequence > b2.sequence);
});

test('rate limit per address answers 429 with retryAfterMs', async () => {
  const h2 = await harness(
    { joinToken: { enabled: true } },
    { rateLimit: { perAddress: 3, perGateway: 2, windowMs: 60_000 } },
  );
  try {
    const codes: number[] = [];
    for (let i = 0; i < 4; i++)
      codes.push((await h2.call('POST', '/v1/attest/begin', { method: 'join-token', token: 'x' })).status);
    assert.equal(codes, [401, 401, 401, 429]);
    const r = await h2.call('POST', '/v1/attest/begin', { method: 'join-token', token: 'x' });
    assert.is(errorCode(r.body), 'ERR_ISSUER_RATE_LIMITED');
    assert.type((r.body as { error: { retryAfterMs: number } }).error.retryAfterMs, 'number');
    await h2.clock.advance(60_000);
    assert.is((await h2.call('POST', '/v1/attest/begin', { method: 'join-token', token: 'x' })).status, 401);
  } finally {
    await h2.running.close();
    rmSync(h2.dir, { recursive: true, force: true });
  }
});

test.run();
