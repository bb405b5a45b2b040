/**
 * The JWT-SVID format pieces: the RFC 7638 `kid` (checked against jose's own thumbprint), the
 * DER → raw r‖s conversion (against node's ieee-p1363 verification), a token signed through the
 * `CaKey` seam that jose verifies, JWT keys in the SPIFFE bundle (`use: "jwt-svid"`, `kid`)
 * round-tripped, and left out when unusable (no kid, duplicate kid, a private member, not a key)
 * while the bundle's X.509 roots still decode,
 * and the agent's bundle source handing out the keys of the bundle it adopted.
 */
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { calculateJwkThumbprint, createLocalJWKSet, jwtVerify } from 'jose';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AgentBundleSource } from '../../../runtime/agent/sources.ts';
import { nullLogger } from '../../../runtime/core/logger.ts';
import { decodeBundle, encodeBundle } from '../../../runtime/svid/bundle.ts';
import { softwareCaKey } from '../../../runtime/svid/ca-key.ts';
import { derToJoseSignature, jwkThumbprint, publicJwk, signJwtSvid } from '../../../runtime/svid/jwt-svid.ts';
import { buildPki } from '../../helpers/pki.ts';
import { rejects } from '../../helpers/rejects.ts';

const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

test('kid is the RFC 7638 thumbprint (as jose computes it); a key that is not P-256 is refused', async () => {
  for (let i = 0; i < 5; i++) {
    const k = ec();
    assert.is(jwkThumbprint(k), await calculateJwkThumbprint(publicJwk(k) as never, 'sha256'));
  }
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
  await rejects(() => jwkThumbprint(p384), 'ERR_JWT_KEY_INVALID');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  await rejects(() => publicJwk(rsa), 'ERR_JWT_KEY_INVALID');
});

test('DER ECDSA → raw r‖s verifies as ieee-p1363 (short r and s included); malformed DER refused', async () => {
  const k = ec();
  for (let i = 0; i < 200; i++) {
    const data = Buffer.from(`message ${i}`);
    const raw = derToJoseSignature(sign('sha256', data, { key: k, dsaEncoding: 'der' }));
    assert.is(raw.length, 64);
    assert.ok(verify('sha256', data, { key: k, dsaEncoding: 'ieee-p1363' }, raw));
  }
  for (const bad of [Buffer.alloc(0), Buffer.from([0x30, 0x02, 0x02, 0x00]), Buffer.from([0x31, 0x00])])
    await rejects(() => derToJoseSignature(bad), 'ERR_JWT_KEY_INVALID');
});

test('a JWT-SVID signed through the CaKey seam verifies with jose; header and claims as the rules say', async () => {
  const key = softwareCaKey(ec());
  const kid = jwkThumbprint(key.publicKey);
  const now = 1_800_000_000;
  const token = await signJwtSvid(key, kid, { sub: 'spiffe://td/w', aud: ['a'], iat: now, exp: now + 300 });
  const set = createLocalJWKSet({ keys: [{ ...publicJwk(key.publicKey), kid }] });
  const { payload, protectedHeader } = await jwtVerify(token, set, {
    audience: 'a',
    currentDate: new Date(now * 1000),
  });
  assert.equal(protectedHeader, { alg: 'ES256', kid, typ: 'JWT' });
  assert.equal(payload, { sub: 'spiffe://td/w', aud: ['a'], exp: now + 300, iat: now });
});

test('bundle: jwt-svid keys round-trip beside the X.509 roots; unusable ones are left out', async () => {
  const pki = await buildPki({ now: Date.now() });
  const k = ec();
  const jwt = { kid: jwkThumbprint(k), jwk: publicJwk(k) };
  const json = encodeBundle({ roots: [pki.root.cert.raw], jwtKeys: [jwt], sequence: 4 });
  const doc = JSON.parse(json) as { keys: Record<string, unknown>[] };
  assert.equal(doc.keys[1], { use: 'jwt-svid', ...jwt.jwk, kid: jwt.kid });
  const b = decodeBundle(json);
  assert.is(b.roots.length, 1);
  assert.equal(b.jwtKeys, [jwt]);
  const withKey = (key: Record<string, unknown>, extra: Record<string, unknown>[] = []) =>
    JSON.stringify({ keys: [doc.keys[0], key, ...extra], spiffe_sequence: 1 });
  const good = { use: 'jwt-svid', ...jwt.jwk, kid: jwt.kid };
  const { kid: _kid, ...noKid } = good;
  for (const bad of [
    withKey(noKid),
    withKey({ ...good, kid: '' }),
    withKey(good, [good]),
    withKey({ ...good, d: 'c2VjcmV0' }),
    withKey({ ...good, x: 'AAAA' }),
    withKey({ ...good, crv: 7 }),
  ]) {
    const d = decodeBundle(bad);
    assert.equal(d.jwtKeys, [], bad);
    assert.is(d.roots.length, 1, 'the X.509 roots still arrive');
  }
  // A duplicated kid drops both (which one signed is ambiguous); the other keys stay.
  const k2 = ec();
  const other = { use: 'jwt-svid', ...publicJwk(k2), kid: jwkThumbprint(k2) };
  assert.equal(
    decodeBundle(withKey(good, [good, other])).jwtKeys.map((j) => j.kid),
    [other.kid],
  );
  // Keys of unknown use are still ignored.
  assert.equal(decodeBundle(withKey({ ...good, use: 'other' })).jwtKeys, []);
  // The agent's bundle source hands out the keys of the bundle it adopted.
  const src = new AgentBundleSource(nullLogger);
  src.adopt(pki.trustDomain, b);
  assert.equal(src.jwtKeysFor(pki.trustDomain), [jwt]);
  await rejects(() => src.jwtKeysFor('other.example'), 'ERR_BUNDLE_UNAVAILABLE');
});

test.run();
