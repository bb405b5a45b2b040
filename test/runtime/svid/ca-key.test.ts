/**
 * The delegated CA key seam (runtime/svid/ca-key.ts) with the software backend: the async
 * template signer produces exactly the TBSCertificate of the synchronous one, its signature
 * verifies under the CA, the CA's CSR is signed through the seam, and a key that is not the
 * certificate's is refused. (The TPM backend runs the same checks in test/attestors/tpm/suite.ts,
 * on swtpm and on the simulator.)
 */
import { generateKeyPairSync, verify, X509Certificate } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { createCaCsr, softwareCaKey } from '../../../runtime/svid/ca-key.ts';
import { parseCertificate } from '../../../runtime/svid/certificate.ts';
import { parseCsr } from '../../../runtime/svid/csr.ts';
import { createCaSigner, createSigner, spkiOf } from '../../../runtime/svid/signer.ts';
import { seededRandom } from '../../../sim/random.ts';

const random = seededRandom('ca-key-test');
const NOW = Date.UTC(2026, 0, 1);
const H = 3_600_000;
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const caDer = createRootCa({
  trustDomain: 'fleet.example',
  privateKey: key,
  notBefore: NOW - H,
  notAfter: NOW + 48 * H,
  random,
});
const devSpki = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
const req = {
  profile: 'svid' as const,
  spiffeId: 'spiffe://fleet.example/gateway/gw/device/d1',
  spki: devSpki,
  notBefore: NOW,
  notAfter: NOW + H,
  serial: Buffer.from('4011223344556677889900aabbccddee', 'hex'),
};

test('software CaKey: same TBSCertificate as the synchronous signer, signature verifies under the CA', async () => {
  const sync = createSigner({ certificate: caDer, privateKey: key, trustDomain: 'fleet.example', random });
  const ca = softwareCaKey(key);
  assert.is(ca.backend, 'software');
  const viaSeam = createCaSigner({ certificate: caDer, key: ca, trustDomain: 'fleet.example', random });
  const a = sync.issue(req);
  const b = await viaSeam.issue(req);
  assert.equal(parseCertificate(b.der).tbs, parseCertificate(a.der).tbs);
  assert.equal([b.serialHex, b.notBefore, b.notAfter], [a.serialHex, a.notBefore, a.notAfter]);
  assert.ok(new X509Certificate(b.der).verify(new X509Certificate(caDer).publicKey));
});

test('the CA CSR is signed through the seam and its self-signature verifies', async () => {
  const ca = softwareCaKey(key);
  const csr = parseCsr(await createCaCsr(ca));
  assert.equal(Buffer.from(csr.spki), ca.spki);
  assert.ok(verify('sha256', Buffer.from('x'), ca.publicKey, await ca.sign(Buffer.from('x'))));
});

test('a CaKey that is not the certificate key is refused (ERR_SVID_SIGNER)', () => {
  const other = softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
  assert.throws(
    () => createCaSigner({ certificate: caDer, key: other, trustDomain: 'fleet.example', random }),
    (e: Error & { code?: string }) => e.code === 'ERR_SVID_SIGNER',
  );
});

test.run();
