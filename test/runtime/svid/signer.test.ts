import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { parseCertificate } from '../../../runtime/svid/certificate.ts';
import { createSigner, spkiOf } from '../../../runtime/svid/signer.ts';
import { seededRandom } from '../../../sim/random.ts';
import { rejects } from '../../helpers/rejects.ts';

const random = seededRandom('signer-test');
const NOW = Date.UTC(2026, 0, 1);
const H = 3_600_000;
const dir = mkdtempSync(join(tmpdir(), 'svid-'));
const pem = (der: Uint8Array): string => new X509Certificate(Buffer.from(der)).toString();

const caKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const rootDer = createRootCa({
  trustDomain: 'fleet.example',
  privateKey: caKey,
  notBefore: NOW - H,
  notAfter: NOW + 48 * H,
  random,
});
const issuer = createSigner({
  certificate: rootDer,
  privateKey: caKey,
  trustDomain: 'fleet.example',
  random,
});
const gwKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const dcaKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const devKey = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
const gwId = 'spiffe://fleet.example/gateway/gw-1';
const gwSvid = issuer.sign({
  profile: 'svid',
  spiffeId: gwId,
  spki: spkiOf(gwKey),
  notBefore: NOW,
  notAfter: NOW + H,
});
const dcaDer = issuer.sign({
  profile: 'device-ca',
  spiffeId: gwId,
  spki: spkiOf(dcaKey),
  notBefore: NOW,
  notAfter: NOW + 100 * H,
});
const delegated = createSigner({
  certificate: dcaDer,
  privateKey: dcaKey,
  trustDomain: 'fleet.example',
  random,
  scope: `${gwId}/device`,
  profiles: ['svid'],
});
const devId = `${gwId}/device/sensor-1`;
const devSvid = delegated.sign({
  profile: 'svid',
  spiffeId: devId,
  spki: spkiOf(devKey),
  notBefore: NOW,
  notAfter: NOW + H,
});

function files(): { root: string; dca: string; gw: string; dev: string } {
  const f = {
    root: join(dir, 'root.pem'),
    dca: join(dir, 'dca.pem'),
    gw: join(dir, 'gw.pem'),
    dev: join(dir, 'dev.pem'),
  };
  writeFileSync(f.root, pem(rootDer));
  writeFileSync(f.dca, pem(dcaDer));
  writeFileSync(f.gw, pem(gwSvid));
  writeFileSync(f.dev, pem(devSvid));
  return f;
}
const at = String(Math.floor((NOW + 60_000) / 1000));

test('gateway SVID: openssl verifies it against the root and shows the X.509-SVID extensions', () => {
  const f = files();
  const out = execFileSync('openssl', ['verify', '-attime', at, '-CAfile', f.root, f.gw], {
    encoding: 'utf8',
  });
  assert.match(out, /OK/);
  const text = execFileSync('openssl', ['x509', '-in', f.gw, '-noout', '-text'], { encoding: 'utf8' });
  assert.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
  assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature\s/);
  assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
  assert.match(text, /URI:spiffe:\/\/fleet\.example\/gateway\/gw-1\s/);
  assert.match(text, /Subject: CN ?= ?gw-1\s/);
  assert.match(text, /X509v3 Authority Key Identifier/);
});

test('node:crypto parses the SVID, the issuer signature verifies, the SAN is the one URI', () => {
  const c = new X509Certificate(gwSvid);
  const root = new X509Certificate(rootDer);
  assert.ok(c.verify(root.publicKey));
  assert.ok(c.checkIssued(root));
  assert.is(c.ca, false);
  assert.is(c.subjectAltName, `URI:${gwId}`);
  assert.is(c.checkPrivateKey(gwKey), true);
  assert.is(Date.parse(c.validTo), NOW + H);
});

test('delegated CA: pathLen 0, keyCertSign+cRLSign critical, URI SAN and URI name constraint', () => {
  const f = files();
  const text = execFileSync('openssl', ['x509', '-in', f.dca, '-noout', '-text'], { encoding: 'utf8' });
  assert.match(text, /CA:TRUE, pathlen:0/);
  assert.match(text, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\s/);
  assert.match(text, /X509v3 Name Constraints: critical\s+Permitted:\s+URI:fleet\.example/);
  assert.match(text, /URI:spiffe:\/\/fleet\.example\/gateway\/gw-1\s/);
});

test('device SVID chains through the delegated CA; openssl enforces the name constraint', () => {
  const f = files();
  const ok = execFileSync(
    'openssl',
    ['verify', '-attime', at, '-CAfile', f.root, '-untrusted', f.dca, f.dev],
    {
      encoding: 'utf8',
    },
  );
  assert.match(ok, /OK/);
  const partial = execFileSync(
    'openssl',
    ['verify', '-attime', at, '-partial_chain', '-CAfile', f.dca, f.dev],
    { encoding: 'utf8' },
  );
  assert.match(partial, /OK/);
  // A CA of another trust domain delegated by the same root fails the URI constraint.
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const otherRoot = createRootCa({
    trustDomain: 'other.example',
    privateKey: otherKey,
    notBefore: NOW - H,
    notAfter: NOW + 48 * H,
    random,
  });
  const other = createSigner({
    certificate: otherRoot,
    privateKey: otherKey,
    trustDomain: 'other.example',
    random,
  });
  const strayCa = other.sign({
    profile: 'device-ca',
    spiffeId: 'spiffe://other.example/gateway/x',
    spki: spkiOf(dcaKey),
    notBefore: NOW,
    notAfter: NOW + H,
  });
  // Re-sign a leaf for fleet.example under a CA constrained to other.example (bypass the signer's checks).
  const rogue = createSigner({
    certificate: strayCa,
    privateKey: dcaKey,
    trustDomain: 'fleet.example',
    random,
  });
  const leaf = rogue.sign({
    profile: 'svid',
    spiffeId: devId,
    spki: spkiOf(devKey),
    notBefore: NOW,
    notAfter: NOW + H,
  });
  writeFileSync(join(dir, 'o-root.pem'), pem(otherRoot));
  writeFileSync(join(dir, 'o-ca.pem'), pem(strayCa));
  writeFileSync(join(dir, 'o-leaf.pem'), pem(leaf));
  let failed = '';
  try {
    execFileSync(
      'openssl',
      [
        'verify',
        '-attime',
        at,
        '-CAfile',
        join(dir, 'o-root.pem'),
        '-untrusted',
        join(dir, 'o-ca.pem'),
        join(dir, 'o-leaf.pem'),
      ],
      { encoding: 'utf8', stdio: 'pipe' },
    );
  } catch (err) {
    failed =
      String((err as { stdout?: string; stderr?: string }).stdout) +
      String((err as { stderr?: string }).stderr);
  }
  assert.match(failed, /name constraint|permitted subtree/i);
});

test('NotAfter is clamped to the signing CA, never past it', () => {
  const c = parseCertificate(
    delegated.sign({
      profile: 'svid',
      spiffeId: devId,
      spki: spkiOf(devKey),
      notBefore: NOW,
      notAfter: NOW + 1000 * H,
    }),
  );
  assert.is(c.notAfter, NOW + 48 * H, 'device SVID clamped to the delegated CA, itself clamped to the root');
  const d = parseCertificate(dcaDer);
  assert.is(d.notAfter, NOW + 48 * H, 'device CA clamped to the root');
});

test('issue() reports the serial and validity exactly as the certificate encodes them', () => {
  const req = { profile: 'svid' as const, spiffeId: devId, spki: spkiOf(devKey) };
  for (const r of [
    { ...req, notBefore: NOW + 1234, notAfter: NOW + H + 999 }, // milliseconds: truncated to seconds
    { ...req, notBefore: NOW - 5 * H, notAfter: NOW + 1000 * H, serial: Buffer.from([0, 0, 0x8f, 1]) }, // clamped both ends
  ]) {
    const out = delegated.issue(r);
    const c = parseCertificate(out.der);
    assert.equal(
      { serialHex: out.serialHex, notBefore: out.notBefore, notAfter: out.notAfter },
      { serialHex: c.serialHex, notBefore: c.notBefore, notAfter: c.notAfter },
    );
  }
});

test('the delegated signer refuses IDs outside its scope, other trust domains and the CA profile', async () => {
  const base = { profile: 'svid' as const, spki: spkiOf(devKey), notBefore: NOW, notAfter: NOW + H };
  await rejects(
    () => delegated.sign({ ...base, spiffeId: 'spiffe://fleet.example/gateway/gw-2/device/x' }),
    'ERR_SVID_ID_INVALID',
  );
  await rejects(() => delegated.sign({ ...base, spiffeId: `${gwId}/device` }), 'ERR_SVID_ID_INVALID');
  await rejects(
    () => issuer.sign({ ...base, spiffeId: 'spiffe://other.example/gateway/a' }),
    'ERR_SVID_ID_INVALID',
  );
  await rejects(
    () => issuer.sign({ ...base, spiffeId: 'spiffe://fleet.example/gateway/../x' }),
    'ERR_SVID_ID_INVALID',
  );
  await rejects(
    () => issuer.sign({ ...base, spiffeId: 'spiffe://fleet.example/gateway/a/' }),
    'ERR_SVID_ID_INVALID',
  );
  await rejects(
    () => delegated.sign({ ...base, profile: 'device-ca', spiffeId: `${devId}` }),
    'ERR_SVID_SIGNER',
  );
  await rejects(
    () => issuer.sign({ ...base, spiffeId: gwId, notBefore: NOW + 49 * H, notAfter: NOW + 50 * H }),
    'ERR_SVID_SIGNER',
  );
});

test('a leaf certificate cannot become a signer; a mismatched key is refused', async () => {
  await rejects(
    () => createSigner({ certificate: gwSvid, privateKey: gwKey, trustDomain: 'fleet.example', random }),
    'ERR_SVID_SIGNER',
  );
  await rejects(
    () => createSigner({ certificate: rootDer, privateKey: gwKey, trustDomain: 'fleet.example', random }),
    'ERR_SVID_SIGNER',
  );
});

test('serials are positive, 16 bytes and distinct', () => {
  const serials = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const c = parseCertificate(
      issuer.sign({
        profile: 'svid',
        spiffeId: gwId,
        spki: spkiOf(gwKey),
        notBefore: NOW,
        notAfter: NOW + H,
      }),
    );
    assert.is(c.serialHex.length, 32);
    serials.add(c.serialHex);
  }
  assert.is(serials.size, 50);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
