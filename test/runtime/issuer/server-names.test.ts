import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { checkServerNames, DEFAULT_SERVER_NAME_POLICY } from '../../../runtime/issuer/server-names.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { createSigner, spkiOf } from '../../../runtime/svid/signer.ts';
import { rejects } from '../../helpers/rejects.ts';

const now = Date.UTC(2026, 10, 1);

test('local names and loopback/private addresses are admitted, normalised and deduplicated', () => {
  assert.equal(
    checkServerNames(
      ['localhost', 'GW-1.local', '127.0.0.1', '::1', '192.168.1.10', 'fd00::7', 'gw-1.local'],
      DEFAULT_SERVER_NAME_POLICY,
    ),
    ['localhost', 'gw-1.local', '127.0.0.1', '::1', '192.168.1.10', 'fd00::7'],
  );
  assert.equal(checkServerNames(undefined, DEFAULT_SERVER_NAME_POLICY), []);
});

test('public names, public addresses and junk are refused with ERR_ISSUER_SERVER_NAME', async () => {
  for (const bad of [
    'issuer.fleet.example',
    '8.8.8.8',
    '2001:db8::1',
    '.local',
    '*.local',
    'a b.local',
    'x'.repeat(300),
  ]) {
    await rejects(() => checkServerNames([bad], DEFAULT_SERVER_NAME_POLICY), 'ERR_ISSUER_SERVER_NAME');
  }
  await rejects(
    () => checkServerNames(['10.0.0.1'], { dnsSuffixes: [], privateAddresses: false }),
    'ERR_ISSUER_SERVER_NAME',
  );
  assert.equal(checkServerNames(['gw.plant.lan'], { dnsSuffixes: ['.plant.lan'], privateAddresses: false }), [
    'gw.plant.lan',
  ]);
});

test('the gateway SVID carries the names after its one URI SAN, as openssl reads them', () => {
  const caKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const ca = createRootCa({
    trustDomain: 'fleet.example',
    privateKey: caKey,
    notBefore: now - 1000,
    notAfter: now + 86_400_000,
    random: cryptoRandom,
  });
  const signer = createSigner({
    certificate: ca,
    privateKey: caKey,
    trustDomain: 'fleet.example',
    random: cryptoRandom,
  });
  const leafKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const der = signer.sign({
    profile: 'svid',
    spiffeId: 'spiffe://fleet.example/gateway/gw-1',
    spki: spkiOf(leafKey),
    notBefore: now,
    notAfter: now + 3_600_000,
    serverNames: ['localhost', '127.0.0.1', '::1'],
  });
  const text = execFileSync('openssl', ['x509', '-inform', 'DER', '-noout', '-ext', 'subjectAltName'], {
    input: der,
  }).toString();
  assert.match(
    text,
    /URI:spiffe:\/\/fleet\.example\/gateway\/gw-1, DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/,
  );
  assert.throws(
    () =>
      signer.sign({
        profile: 'device-ca',
        spiffeId: 'spiffe://fleet.example/gateway/gw-1',
        spki: spkiOf(leafKey),
        notBefore: now,
        notAfter: now + 1000,
        serverNames: ['localhost'],
      }),
    (e: Error & { code?: string }) => e.code === 'ERR_SVID_SIGNER',
  );
});

test.run();
