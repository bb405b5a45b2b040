/** X.509-SVID verification: the good chain, every broken variant by its code, caching and revocation. */
import 'reflect-metadata';
import { webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StaticRevocationSource } from '../../../runtime/sources/static.ts';
import { certFacts, normalizeSerial } from '../../../runtime/spiffe/cert-facts.ts';
import { explicit, implicit, seq } from '../../../runtime/spiffe/der.ts';
import { deviceIdOf, parseSpiffeId } from '../../../runtime/spiffe/id.ts';
import { SvidVerifier, verifyX509Svid } from '../../../runtime/spiffe/verify.ts';
import { createCsr } from '../../../runtime/svid/csr.ts';
import { type BrokenKind, buildPki, ECDSA_P256, newKey } from '../../helpers/pki.ts';
import { rejects } from '../../helpers/rejects.ts';

const NOW = Date.UTC(2026, 0, 1);
const pki = await buildPki({ now: NOW });
const opts = { now: NOW, bundle: pki.bundle };

test('SPIFFE IDs parse strictly', async () => {
  assert.is(parseSpiffeId('spiffe://fleet.example/gateway/gw-1').trustDomain, 'fleet.example');
  for (const bad of [
    'http://fleet.example/x',
    'spiffe://Fleet.example/x',
    'spiffe://fleet.example//x',
    'spiffe://fleet.example/a/../b',
    'spiffe://fleet.example/a?b',
    'spiffe://fleet.example:8080/a',
    'spiffe://user@fleet.example/a',
    'spiffe://',
  ]) {
    await rejects(() => parseSpiffeId(bad), 'ERR_SPIFFE_ID_INVALID');
  }
  assert.is(deviceIdOf('spiffe://td/gateway/a/device/x', 'spiffe://td/gateway/a'), 'x');
  assert.is(deviceIdOf('spiffe://td/gateway/a/device/x/y', 'spiffe://td/gateway/a'), undefined);
  assert.is(deviceIdOf('spiffe://td/gateway/ab/device/x', 'spiffe://td/gateway/a'), undefined);
});

/** A self-signed P-256 certificate carrying `extensions` as given (bytes the product would not write). */
async function selfSigned(extensions: x509.Extension[]): Promise<X509Certificate> {
  const keys = await webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=raw',
    keys,
    signingAlgorithm: ECDSA_P256,
    notBefore: new Date(NOW - 3_600_000),
    notAfter: new Date(NOW + 3_600_000),
    extensions,
  });
  return new X509Certificate(Buffer.from(cert.rawData));
}

test('name constraints: URI bases of permitted and excluded subtrees are read, other name forms ignored', async () => {
  const subtree = (tag: number, base: string): Buffer => seq(implicit(tag, Buffer.from(base, 'latin1')));
  const nc = seq(
    explicit(0, subtree(6, 'fleet.example'), subtree(2, 'dns.example')),
    explicit(1, subtree(6, '.bad.example')),
  );
  const f = certFacts(
    await selfSigned([
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.Extension('2.5.29.30', true, nc),
    ]),
  );
  assert.equal(f.permittedUris, ['fleet.example']);
  assert.equal(f.excludedUris, ['.bad.example']);
  assert.equal(f.unknownCritical, []);
});

test('peer-certificate extensions must be DER: a non-minimal length inside the SAN is ERR_SVID_INVALID', async () => {
  const id = 'spiffe://fleet.example/gateway/gw-1/device/d1';
  const names = seq(implicit(6, Buffer.from(id, 'latin1')));
  // The same GeneralNames with its short length written in the long form (0x81 n, n < 128).
  const longForm = Buffer.concat([Buffer.from([0x30, 0x81, names.length - 2]), names.subarray(2)]);
  const san = (v: Buffer) => selfSigned([new x509.Extension('2.5.29.17', false, v)]);
  assert.equal(certFacts(await san(names)).uris, [id]);
  const bad = await san(longForm);
  await rejects(() => certFacts(bad), 'ERR_SVID_INVALID');
});

test('a device SVID signed by the delegated CA verifies, with its signer and bounded notAfter', async () => {
  const dev = await pki.device('sensor-1');
  const r = verifyX509Svid(dev.chain, opts);
  assert.is(r.spiffeId, `${pki.gateway.id}/device/sensor-1`);
  assert.is(r.signerId, pki.gateway.id);
  assert.is(r.notAfter, Math.min(Date.parse(dev.cert.validTo), Date.parse(pki.deviceCa.cert.validTo)));
  // Leaf alone, with the delegated CA as an anchor.
  const r2 = verifyX509Svid([dev.cert], { ...opts, delegatedCa: pki.deviceCa.cert });
  assert.is(r2.spiffeId, r.spiffeId);
  // Leaf alone without it does not chain.
  await rejects(() => verifyX509Svid([dev.cert], opts), 'ERR_SVID_UNTRUSTED');
});

test('the gateway SVID verifies as a server', () => {
  const r = verifyX509Svid(pki.gateway.chain, { ...opts, purpose: 'server' });
  assert.is(r.spiffeId, pki.gateway.id);
  assert.is(r.signerId, undefined);
});

const expected: Record<BrokenKind, string> = {
  'ca-true': 'ERR_SVID_INVALID',
  'two-uris': 'ERR_SVID_INVALID',
  'no-uri': 'ERR_SVID_INVALID',
  'wrong-ca': 'ERR_SVID_UNTRUSTED',
  expired: 'ERR_SVID_EXPIRED',
  'not-yet-valid': 'ERR_SVID_EXPIRED',
  'other-gateway-path': 'ERR_SVID_PATH_SCOPE',
  'not-device-path': 'ERR_SVID_PATH_SCOPE',
  'no-key-usage': 'ERR_SVID_INVALID',
  'key-usage-not-critical': 'ERR_SVID_INVALID',
  'key-cert-sign': 'ERR_SVID_INVALID',
  'server-only-eku': 'ERR_SVID_INVALID',
  'other-trust-domain': 'ERR_SVID_UNTRUSTED',
  'expired-intermediate': 'ERR_SVID_EXPIRED',
};

for (const [kind, code] of Object.entries(expected)) {
  test(`refuses ${kind} with ${code}`, async () => {
    const bad = await pki.broken(kind as BrokenKind);
    await rejects(() => verifyX509Svid(bad.chain, opts), code);
    // The cached verifier gives the same answer, twice.
    const v = new SvidVerifier();
    const der = bad.chain.map((c) => c.raw);
    await rejects(() => v.verifyDer(der, opts), code);
    await rejects(() => v.verifyDer(der, opts), code);
  });
}

test('a delegated CA without pathLen room cannot vouch for a sub-CA, and a chain with garbage is refused', async () => {
  const dev = await pki.device('sensor-2');
  // An intermediate that did not sign the leaf.
  await rejects(() => verifyX509Svid([dev.cert, pki.otherCa.cert], opts), 'ERR_SVID_UNTRUSTED');
  const v = new SvidVerifier();
  await rejects(() => v.verifyDer([Buffer.from('not a certificate')], opts), 'ERR_SVID_INVALID');
  await rejects(() => v.verifyDer([], opts), 'ERR_SVID_INVALID');
});

test('cached results still check time and revocation on every call', async () => {
  const dev = await pki.device('sensor-3');
  const v = new SvidVerifier();
  const der = dev.chain.map((c) => c.raw);
  const rev = new StaticRevocationSource();
  assert.is(v.verifyDer(der, { ...opts, revocation: rev }).spiffeId, dev.id);
  await rejects(
    () => v.verifyDer(der, { ...opts, now: Date.parse(dev.cert.validTo) + 1000 }),
    'ERR_SVID_EXPIRED',
  );
  rev.revoke({ serials: [normalizeSerial(dev.cert.serialNumber)] });
  await rejects(() => v.verifyDer(der, { ...opts, revocation: rev }), 'ERR_SVID_REVOKED');
  const dev2 = await pki.device('sensor-4');
  rev.revoke({ spiffeIds: [pki.gateway.id] });
  // Revoking the gateway revokes the devices its delegated CA signed.
  await rejects(() => verifyX509Svid(dev2.chain, { ...opts, revocation: rev }), 'ERR_SVID_REVOKED');
});

test('the signer issues SVIDs that verify, from a real CSR, and refuses a bad CSR', async () => {
  const { VirtualClock } = await import('../../../sim/clock/virtual-clock.ts');
  const clock = new VirtualClock(NOW);
  const signer = pki.signer(clock);
  const csrDer = createCsr(newKey(), 'sensor-9');
  const out = await signer.signDevice({ deviceId: 'sensor-9', csrDer });
  const chain = out.chain.map((d) => new X509Certificate(d));
  const r = verifyX509Svid(chain, opts);
  assert.is(r.spiffeId, `${pki.gateway.id}/device/sensor-9`);
  assert.is(chain[0]?.subject, 'CN=sensor-9');
  await rejects(
    () => signer.signDevice({ deviceId: 'sensor-9', csrDer: new Uint8Array([1, 2, 3]) }),
    'ERR_DEVICE_CSR_INVALID',
  );
  await rejects(() => signer.signDevice({ deviceId: '../x', csrDer }), 'ERR_DEVICE_ID_INVALID');
  const tampered = Uint8Array.from(csrDer);
  tampered[tampered.length - 5] = (tampered[tampered.length - 5] as number) ^ 0xff;
  await rejects(
    () => signer.signDevice({ deviceId: 'sensor-9', csrDer: tampered }),
    'ERR_DEVICE_CSR_INVALID',
  );
});

test.run();
