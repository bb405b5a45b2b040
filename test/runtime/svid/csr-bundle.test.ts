import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { decodeBundle, encodeBundle } from '../../../runtime/svid/bundle.ts';
import { createCsr, parseCsr } from '../../../runtime/svid/csr.ts';
import { spkiOf } from '../../../runtime/svid/signer.ts';
import { seededRandom } from '../../../sim/random.ts';
import { rejects } from '../../helpers/rejects.ts';

const dir = mkdtempSync(join(tmpdir(), 'csr-'));
const NOW = Date.UTC(2026, 0, 1);

test('createCsr output verifies with openssl req and parses back to its SPKI', () => {
  for (const opts of [
    { type: 'ec', namedCurve: 'P-256' },
    { type: 'ec', namedCurve: 'P-384' },
    { type: 'rsa', modulusLength: 2048 },
  ] as const) {
    const key =
      opts.type === 'ec'
        ? generateKeyPairSync('ec', { namedCurve: opts.namedCurve }).privateKey
        : generateKeyPairSync('rsa', { modulusLength: opts.modulusLength }).privateKey;
    const der = createCsr(key);
    const f = join(dir, 'req.der');
    writeFileSync(f, der);
    const out = execFileSync('openssl', ['req', '-in', f, '-inform', 'DER', '-noout', '-verify'], {
      encoding: 'utf8',
      stdio: 'pipe',
    });
    assert.not.match(out, /fail/i);
    const parsed = parseCsr(der);
    assert.equal(parsed.spki, spkiOf(key));
    assert.equal(
      parsed.publicKey.export({ type: 'spki', format: 'der' }),
      spkiOf(key),
      'the key imported is the one sent',
    );
  }
});

test('a CSR made by openssl parses', () => {
  const keyFile = join(dir, 'k.pem');
  execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyFile]);
  const der = execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', '/CN=x', '-outform', 'DER']);
  const p = parseCsr(der);
  assert.is(p.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
});

test('a CSR whose EC key has explicit curve parameters is refused (RFC 5480: namedCurve only)', async () => {
  const keyFile = join(dir, 'explicit.pem');
  execFileSync('openssl', [
    'ecparam',
    '-name',
    'prime256v1',
    '-param_enc',
    'explicit',
    '-genkey',
    '-noout',
    '-out',
    keyFile,
  ]);
  const der = execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', '/CN=x', '-outform', 'DER']);
  // The same key named by its curve OID is fine: only the encoding is refused.
  await rejects(() => parseCsr(der), 'ERR_CSR_EXPLICIT_CURVE');
  const named = join(dir, 'named.pem');
  execFileSync('openssl', ['ec', '-in', keyFile, '-param_enc', 'named_curve', '-out', named], {
    stdio: 'ignore',
  });
  const ok = execFileSync('openssl', ['req', '-new', '-key', named, '-subj', '/CN=x', '-outform', 'DER']);
  assert.is(parseCsr(ok).publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
});

test('CSR refusals: tampered signature, weak keys, garbage, truncation', async () => {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const good = createCsr(key);
  const tampered = Buffer.from(good);
  tampered[tampered.length - 3] = (tampered[tampered.length - 3] as number) ^ 1;
  await rejects(() => parseCsr(tampered), 'ERR_CSR_SIGNATURE');
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
  // createCsr itself refuses to sign with a weak key; build one with openssl instead.
  const kf = join(dir, 'weak.pem');
  writeFileSync(kf, rsa1024.export({ format: 'pem', type: 'pkcs8' }));
  const weak = execFileSync('openssl', ['req', '-new', '-key', kf, '-subj', '/CN=x', '-outform', 'DER']);
  await rejects(() => parseCsr(weak), 'ERR_CSR_WEAK_KEY');
  const k224 = join(dir, 'p224.pem');
  execFileSync('openssl', ['ecparam', '-name', 'secp224r1', '-genkey', '-noout', '-out', k224]);
  await rejects(
    () =>
      parseCsr(execFileSync('openssl', ['req', '-new', '-key', k224, '-subj', '/CN=x', '-outform', 'DER'])),
    'ERR_CSR_WEAK_KEY',
  );
  const ed = join(dir, 'ed.pem');
  execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', ed]);
  await rejects(
    () => parseCsr(execFileSync('openssl', ['req', '-new', '-key', ed, '-subj', '/CN=x', '-outform', 'DER'])),
    'ERR_CSR_MALFORMED',
  );
  await rejects(() => parseCsr(Buffer.from('not a csr')), 'ERR_CSR_MALFORMED');
  await rejects(() => parseCsr(good.subarray(0, good.length - 5)), 'ERR_CSR_MALFORMED');
  await rejects(() => parseCsr(Buffer.concat([good, Buffer.from([0])])), 'ERR_CSR_MALFORMED');
  await rejects(() => parseCsr(new Uint8Array(0)), 'ERR_CSR_MALFORMED');
  // A P-256 point moved off the curve (last byte of y) is refused before any signature check.
  const spki = spkiOf(key);
  const at = good.indexOf(spki);
  assert.ok(at > 0);
  const offCurve = Buffer.from(good);
  offCurve[at + spki.length - 1] = (offCurve[at + spki.length - 1] as number) ^ 1;
  await rejects(() => parseCsr(offCurve), 'ERR_CSR_MALFORMED');
});

test('bundle: encode → decode round trip keeps roots, sequence and refresh hint', () => {
  const random = seededRandom('bundle');
  const k1 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const k2 = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const r1 = createRootCa({
    trustDomain: 'fleet.example',
    privateKey: k1,
    notBefore: NOW,
    notAfter: NOW + 1e9,
    random,
  });
  const r2 = createRootCa({
    trustDomain: 'fleet.example',
    privateKey: k2,
    notBefore: NOW,
    notAfter: NOW + 1e9,
    random,
  });
  const json = encodeBundle({ roots: [r1, r2], sequence: 7, refreshHintSeconds: 300 });
  const doc = JSON.parse(json);
  assert.is(doc.keys[0].use, 'x509-svid');
  assert.is(doc.keys[0].kty, 'EC');
  assert.is(doc.keys[1].kty, 'RSA');
  assert.is(doc.spiffe_sequence, 7);
  assert.is(doc.spiffe_refresh_hint, 300);
  const b = decodeBundle(json);
  assert.is(b.sequence, 7);
  assert.is(b.refreshHintSeconds, 300);
  assert.equal(
    b.roots.map((r) => r.raw),
    [r1, r2].map((r) => new X509Certificate(r).raw),
  );
});

test('bundle: refusals and ignored keys', async () => {
  const random = seededRandom('bundle2');
  const k1 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const k2 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const r1 = createRootCa({
    trustDomain: 'fleet.example',
    privateKey: k1,
    notBefore: NOW,
    notAfter: NOW + 1e9,
    random,
  });
  const good = JSON.parse(encodeBundle({ roots: [r1], sequence: 1 }));
  const withJwt = { ...good, keys: [...good.keys, { use: 'jwt-svid', kty: 'EC', kid: 'a' }, { kty: 'EC' }] };
  assert.is(decodeBundle(JSON.stringify(withJwt)).roots.length, 1);
  await rejects(() => decodeBundle('{'), 'ERR_BUNDLE_MALFORMED');
  await rejects(() => decodeBundle('[]'), 'ERR_BUNDLE_MALFORMED');
  await rejects(() => decodeBundle('{"keys":{}}'), 'ERR_BUNDLE_MALFORMED');
  await rejects(() => decodeBundle(JSON.stringify({ ...good, spiffe_sequence: -1 })), 'ERR_BUNDLE_MALFORMED');
  const twoX5c = { ...good, keys: [{ ...good.keys[0], x5c: [good.keys[0].x5c[0], good.keys[0].x5c[0]] }] };
  await rejects(() => decodeBundle(JSON.stringify(twoX5c)), 'ERR_BUNDLE_MALFORMED');
  const jwk2 = k2.export({ format: 'jwk' });
  const mismatch = { ...good, keys: [{ ...good.keys[0], x: jwk2.x, y: jwk2.y }] };
  await rejects(() => decodeBundle(JSON.stringify(mismatch)), 'ERR_BUNDLE_MALFORMED');
  const notCert = { ...good, keys: [{ ...good.keys[0], x5c: ['AAAA'] }] };
  await rejects(() => decodeBundle(JSON.stringify(notCert)), 'ERR_BUNDLE_MALFORMED');
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
