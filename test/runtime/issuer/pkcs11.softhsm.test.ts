/**
 * The PKCS#11 CA key backend's own contract, on SoftHSM2: RFC 7512 URIs (and what is refused),
 * the DER form of the token's raw r‖s, a generated key that is sensitive and not extractable,
 * typed errors for a missing module, a wrong PIN, a PIN file readable by others, a missing key or
 * token and a key generated twice; the config's `ca.key: pkcs11:…` with `ca.pkcs11` validated with
 * lines; and `edgeward issuer ca create --pkcs11` followed by an issuer started from a config with
 * that key, whose /readyz goes 503 with the reason while the token is gone and 200 once it is back.
 */
import { generateKeyPairSync, sign, verify, X509Certificate } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { ISSUER_ROLE, loadConfigFile, loadConfigText } from '../../../runtime/config/load.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { nullLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import type { ConfigError } from '../../../runtime/errors.ts';
import { createDevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { issuerOptionsFromConfig } from '../../../runtime/issuer/from-config.ts';
import { ecdsaRawToDer, generatePkcs11CaKey, openPkcs11CaKey } from '../../../runtime/issuer/pkcs11/key.ts';
import { CK, Pkcs11Module } from '../../../runtime/issuer/pkcs11/module.ts';
import { parsePkcs11Uri } from '../../../runtime/issuer/pkcs11/uri.ts';
import { startIssuer } from '../../../runtime/issuer/start.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { decodeBundle } from '../../../runtime/svid/bundle.ts';
import { createCsr } from '../../../runtime/svid/csr.ts';
import { jwkThumbprint } from '../../../runtime/svid/jwt-svid.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { rejects } from '../../helpers/rejects.ts';
import { SOFTHSM2_MODULE, softHsmToken } from '../../helpers/softhsm.ts';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-pkcs11-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('RFC 7512 URIs: token, object, percent-encoded id; PIN, query, unknown attributes and no key refused', () => {
  assert.equal(parsePkcs11Uri('pkcs11:token=edge%20ward;object=issuer-ca;id=%01%ff;type=private'), {
    token: 'edge ward',
    object: 'issuer-ca',
    id: Buffer.from([1, 0xff]),
  });
  for (const bad of [
    'pkcs11:token=edgeward;object=ca?pin-value=1234',
    'pkcs11:token=edgeward;object=ca;pin-value=1234',
    'pkcs11:token=edgeward',
    'pkcs11:object=ca',
    'pkcs11:token=edgeward;object=ca;type=cert',
    'pkcs11:token=edgeward;object=%zz',
    'pkcs11:token=a;token=b;object=ca',
    'file:ca.key',
  ])
    assert.throws(
      () => parsePkcs11Uri(bad),
      (e: { code?: string }) => e.code === 'ERR_ISSUER_PKCS11_URI',
      bad,
    );
});

test('raw r‖s to DER: every P-256 signature (high bits, leading zeros) verifies as DER', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  for (let i = 0; i < 300; i++) {
    const data = Buffer.from(`data ${i}`);
    const raw = sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    assert.ok(verify('sha256', data, publicKey, ecdsaRawToDer(raw)), `signature ${i}`);
  }
  const raw = Buffer.concat([
    Buffer.alloc(31),
    Buffer.from([0x80]),
    Buffer.from([0x01]),
    Buffer.alloc(31, 0xff),
  ]);
  assert.equal(ecdsaRawToDer(raw).toString('hex'), `3026${'02020080'}${'0220'}01${'ff'.repeat(31)}`);
});

test('a generated key is a sensitive, not extractable token key; generating it again is refused', async () => {
  const t = softHsmToken();
  const o = { uri: t.uri('issuer-ca'), module: t.module, pinFile: t.pinFile };
  const key = await generatePkcs11CaKey(o);
  const m = await Pkcs11Module.open(t.module);
  const api = m.api;
  const slot = api.C_GetSlotList(true).find((s) => api.C_GetTokenInfo(s).label.trimEnd() === t.label);
  const s = api.C_OpenSession(slot as Buffer, CK.CKF_SERIAL_SESSION);
  try {
    api.C_FindObjectsInit(s, [
      { type: CK.CKA_CLASS, value: CK.CKO_PRIVATE_KEY },
      { type: CK.CKA_LABEL, value: 'issuer-ca' },
    ]);
    const [h] = api.C_FindObjects(s, 2);
    api.C_FindObjectsFinal(s);
    const [sensitive, extractable, token] = api.C_GetAttributeValue(s, h as Buffer, [
      { type: CK.CKA_SENSITIVE },
      { type: CK.CKA_EXTRACTABLE },
      { type: CK.CKA_TOKEN },
    ]);
    assert.equal(
      [sensitive?.value, extractable?.value, token?.value],
      [Buffer.from([1]), Buffer.from([0]), Buffer.from([1])],
    );
    // CKA_VALUE (the private scalar) is never given out.
    assert.throws(() => api.C_GetAttributeValue(s, h as Buffer, [{ type: 0x11 }]), /CKR_ATTRIBUTE_SENSITIVE/);
  } finally {
    api.C_CloseSession(s);
    await m.release();
  }
  await rejects(() => generatePkcs11CaKey(o), 'ERR_ISSUER_PKCS11_OBJECT');
  await key.close();
  // Opened again by its URI after the generating process let go of it.
  const again = await openPkcs11CaKey(o);
  assert.equal(again.spki, key.spki);
  await again.close();
});

test('typed errors: module missing, wrong PIN, PIN file mode, key missing, token missing', async () => {
  const t = softHsmToken();
  const o = { uri: t.uri('issuer-ca'), module: t.module, pinFile: t.pinFile };
  await (await generatePkcs11CaKey(o)).close();
  await rejects(
    () => openPkcs11CaKey({ ...o, module: join(dir, 'no-such-module.so') }),
    'ERR_ISSUER_PKCS11_MODULE',
  );
  await rejects(() => openPkcs11CaKey({ ...o, pinFile: t.wrongPinFile }), 'ERR_ISSUER_PKCS11_PIN');
  await rejects(() => openPkcs11CaKey({ ...o, pinFile: join(dir, 'no-pin') }), 'ERR_ISSUER_PKCS11_PIN');
  const loose = join(dir, 'loose.pin');
  copyFileSync(t.pinFile, loose);
  chmodSync(loose, 0o644);
  await rejects(() => openPkcs11CaKey({ ...o, pinFile: loose }), 'ERR_ISSUER_KEY_PERMISSIONS');
  await rejects(() => openPkcs11CaKey({ ...o, uri: t.uri('no-such-key') }), 'ERR_ISSUER_PKCS11_OBJECT');
  await rejects(
    () => openPkcs11CaKey({ ...o, uri: 'pkcs11:token=no-such-token;object=issuer-ca' }),
    'ERR_ISSUER_PKCS11_OBJECT',
  );
  // Still fine with the right options after all that.
  await (await openPkcs11CaKey(o)).close();
});

const dev = await createDevIssuerFiles(join(dir, 'dev'), {
  trustDomain: 'fleet.example',
  clock: systemClock,
  random: cryptoRandom,
});

/** A v3 issuer config; `ca` is the YAML of the ca: section (line 4 onwards). */
function config(ca: string, extra = ''): string {
  return `version: 3
trustDomain: fleet.example
listen: { host: 127.0.0.1, port: 0, certificate: ${dev.paths.tlsCertificate}, key: ${dev.paths.tlsKey} }
ca:
${ca}
store: { leveldb: { dir: ${join(dir, 'store')} } }
attestation:
  joinToken: { enabled: true }
health: { host: 127.0.0.1, port: 0 }
log: { level: error }
${extra}`;
}

const issuesOf = async (text: string) =>
  (await rejects<ConfigError>(() => loadConfigText(text, ISSUER_ROLE), 'ERR_CONFIG_INVALID')).issues.map(
    (i) => `${i.path}: ${i.message}`,
  );

test('config: a pkcs11: ca.key needs ca.pkcs11, a bad URI is named with its line, ca.pkcs11 alone is refused', async () => {
  const cert = `  certificate: ${dev.paths.caCertificate}`;
  assert.equal(await issuesOf(config(`${cert}\n  key: pkcs11:token=edgeward;object=ca`)), [
    'ca.key: is a PKCS#11 URI: set ca.pkcs11: { module, pinFile } (line 6)',
  ]);
  const [pin] = await issuesOf(
    config(
      `${cert}\n  key: pkcs11:token=edgeward;object=ca;pin-value=1234\n  pkcs11: { module: /m.so, pinFile: /p }`,
    ),
  );
  assert.match(pin as string, /^ca\.key: .*unknown attribute pin-value.*\(line 6\)$/);
  assert.equal(
    await issuesOf(config(`${cert}\n  key: ${dev.paths.caKey}\n  pkcs11: { module: /m.so, pinFile: /p }`)),
    [
      'ca.pkcs11: is set but no key (ca.key, ca.next.key, jwtSvid.key, jwtSvid.next) is a pkcs11: URI (line 7)',
    ],
  );
});

test('jwtSvid.key in the token: JWT-SVIDs signed by C_Sign validate with jose against the bundle; the file CA alongside', async () => {
  const t = softHsmToken();
  const jwtUri = t.uri('issuer-jwt');
  const made = await generatePkcs11CaKey({ uri: jwtUri, module: SOFTHSM2_MODULE, pinFile: t.pinFile });
  const kid = jwkThumbprint(made.publicKey);
  await made.close();
  // Without ca.pkcs11 the URI is refused at its line, as for the CA key.
  const cert = `  certificate: ${dev.paths.caCertificate}\n  key: ${dev.paths.caKey}`;
  assert.equal(await issuesOf(config(cert, `jwtSvid: { key: '${jwtUri}' }\n`)), [
    'jwtSvid.key: is a PKCS#11 URI: set ca.pkcs11: { module, pinFile } (line 12)',
  ]);
  const f = join(dir, 'issuer-jwt.yaml');
  writeFileSync(
    f,
    config(
      `${cert}\n  pkcs11: { module: ${SOFTHSM2_MODULE}, pinFile: ${t.pinFile} }`,
      `jwtSvid: { key: '${jwtUri}' }\n`,
    ),
  );
  const cfg = await loadConfigFile(f, ISSUER_ROLE, {}, { now: Date.now() });
  const running = await startIssuer(
    await issuerOptionsFromConfig(cfg, {
      store: await openMemoryStore(),
      clock: systemClock,
      random: cryptoRandom,
      logger: nullLogger,
    }),
  );
  try {
    const ctx = { address: '127.0.0.1' };
    const token = await running.issuer.createJoinToken('gw-jwt', 600_000);
    const begin = await running.issuer.attestBegin({ method: 'join-token', token }, ctx);
    const gwKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const caKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const id = await running.issuer.attestFinish(
      {
        method: 'join-token',
        sessionId: begin.sessionId,
        csr: createCsr(gwKey.privateKey),
        caCsr: createCsr(caKey.privateKey),
      },
      ctx,
    );
    const sub = `${id.spiffeId}/workload/adapter`;
    const peer = { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array };
    const { token: jwt } = await running.issuer.jwtSvid({ spiffeId: sub, audience: ['api.example'] }, peer);
    assert.equal(decodeProtectedHeader(jwt), { alg: 'ES256', kid, typ: 'JWT' });
    const b = decodeBundle(running.issuer.bundle().json);
    assert.equal(
      b.jwtKeys.map((k) => k.kid),
      [kid],
    );
    const set = createLocalJWKSet({ keys: b.jwtKeys.map((k) => ({ ...k.jwk, kid: k.kid })) });
    const ok = await jwtVerify(jwt, set, { audience: 'api.example', algorithms: ['ES256'] });
    assert.is(ok.payload.sub, sub);
    assert.equal(await running.issuer.readiness(), []);
    // The token goes away: the JWT key's probe fails with the token's code, and so does a request.
    t.remove();
    const reasons = await running.issuer.readiness();
    assert.ok(
      reasons.some((r) => r.startsWith('jwt-key: ERR_ISSUER_PKCS11_TOKEN')),
      reasons.join('; '),
    );
    await rejects(
      () => running.issuer.jwtSvid({ spiffeId: sub, audience: ['api.example'] }, peer),
      'ERR_ISSUER_PKCS11_TOKEN',
    );
    t.restore();
  } finally {
    await running.close();
  }
});

const httpGet = (url: string): Promise<{ status: number; text: string }> =>
  new Promise((resolve, reject) => {
    get(url, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    }).on('error', reject);
  });

test('ca create --pkcs11 writes only the certificate; an issuer from that config signs in the token, /readyz follows the token', async () => {
  const t = softHsmToken();
  const out = join(dir, 'hsm-ca.pem');
  const args = ['issuer', 'ca', 'create', '--pkcs11', t.uri('issuer-ca'), '--module', SOFTHSM2_MODULE];
  const io = captureIo({ cwd: dir });
  const code = await main(
    [...args, '--pin-file', t.pinFile, '--trust-domain', 'fleet.example', '--out', out, '--ttl', '30d'],
    io,
  );
  assert.is(code, 0, io.stderr.join('\n'));
  assert.match(io.stdout.join('\n'), /CA key generated in the token/);
  const ca = new X509Certificate(readFileSync(out));
  assert.ok(ca.ca && ca.verify(ca.publicKey));
  // An existing certificate is never replaced (and no second key is made for it).
  const again = captureIo({ cwd: dir });
  assert.is(
    await main([...args, '--pin-file', t.pinFile, '--trust-domain', 'fleet.example', '--out', out], again),
    1,
  );
  assert.match(again.stderr.join('\n'), /ERR_ISSUER_CA_INVALID/);

  const f = join(dir, 'issuer.yaml');
  writeFileSync(
    f,
    config(
      `  certificate: ${out}\n  key: ${t.uri('issuer-ca')}\n  pkcs11: { module: ${SOFTHSM2_MODULE}, pinFile: ${t.pinFile} }`,
    ),
  );
  const cfg = await loadConfigFile(f, ISSUER_ROLE, {}, { now: Date.now() });
  const store = await openMemoryStore();
  // The issuer's clock (injected into the token key) paces the key's reconnects.
  const clock = new VirtualClock(Date.now());
  const options = await issuerOptionsFromConfig(cfg, {
    store,
    clock,
    random: cryptoRandom,
    logger: nullLogger,
  });
  const running = await startIssuer(options);
  try {
    const url = running.healthUrl as string;
    assert.ok(running.caCertificate.equals(ca.raw));
    assert.equal(await httpGet(`${url}/readyz`), { status: 200, text: 'ready\n' });
    const op = await running.issuer.createOperatorCertificate(
      'alice',
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'der', type: 'spki' }),
      3_600_000,
    );
    assert.ok(new X509Certificate(op.certificate).verify(ca.publicKey), 'signed by the token key');
    t.remove();
    const r = await httpGet(`${url}/readyz`);
    assert.is(r.status, 503);
    assert.match(r.text, /^ca: ERR_ISSUER_PKCS11_TOKEN /m);
    // The next probe tries to reconnect, and fails: the token is still gone.
    assert.is((await httpGet(`${url}/readyz`)).status, 503);
    t.restore();
    // The key reconnects at most once a second after a failed reconnect (by the issuer's clock):
    // still not ready until that second has passed, ready at once after it.
    assert.is((await httpGet(`${url}/readyz`)).status, 503, 'no reconnect within the second');
    await clock.advance(1000);
    assert.equal(await httpGet(`${url}/readyz`), { status: 200, text: 'ready\n' });

    // ca rotate with no ca.next configured: the next key is generated in the token (from-config's
    // nextCaSource), its certificate signed there and kept in the store only; nothing is written.
    const files = readdirSync(dir).sort();
    const status = await running.issuer.rotateCa('op-test', { immediate: true });
    const next = running.issuer.roots()[0] as X509Certificate;
    assert.is(status.active.fingerprint, next.fingerprint256.replace(/:/g, '').toLowerCase());
    assert.not.ok(next.raw.equals(ca.raw));
    assert.match(next.subject, /#2/);
    const op2 = await running.issuer.createOperatorCertificate(
      'carol',
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'der', type: 'spki' }),
      3_600_000,
    );
    assert.ok(new X509Certificate(op2.certificate).verify(next.publicKey), 'signed by the next token key');
    assert.equal(readdirSync(dir).sort(), files, 'no file written');
    assert.equal(await running.issuer.readiness(), []);
  } finally {
    await running.close();
  }
  assert.ok(existsSync(out));
});

test('ca create --config --next makes the next CA in the token; the issuer publishes it and signs with it after ca rotate', async () => {
  const t = softHsmToken();
  const next = join(dir, 'next-ca.pem');
  const f = join(dir, 'next.yaml');
  writeFileSync(
    f,
    config(
      `  certificate: ${dev.paths.caCertificate}\n  key: ${dev.paths.caKey}\n  next: { certificate: ${next}, key: "${t.uri('issuer-ca-2')}" }\n  pkcs11: { module: ${SOFTHSM2_MODULE}, pinFile: ${t.pinFile} }`,
    ),
  );
  const io = captureIo({ cwd: dir });
  assert.is(await main(['issuer', 'ca', 'create', '--config', f, '--next'], io), 0, io.stderr.join('\n'));
  const nextCa = new X509Certificate(readFileSync(next));
  const cfg = await loadConfigFile(f, ISSUER_ROLE, {}, { now: Date.now() });
  const store = await openMemoryStore();
  const options = await issuerOptionsFromConfig(cfg, {
    store,
    clock: systemClock,
    random: cryptoRandom,
    logger: nullLogger,
  });
  const running = await startIssuer(options);
  try {
    const roots = running.issuer.roots().map((r) => r.fingerprint256);
    assert.equal(roots, [new X509Certificate(dev.ca.certificate).fingerprint256, nextCa.fingerprint256]);
    const spki = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
      format: 'der',
      type: 'spki',
    });
    const before = await running.issuer.createOperatorCertificate('bob', spki, 3_600_000);
    assert.ok(
      new X509Certificate(before.certificate).verify(new X509Certificate(dev.ca.certificate).publicKey),
    );
    await running.issuer.rotateCa();
    const after = await running.issuer.createOperatorCertificate('bob', spki, 3_600_000);
    assert.ok(
      new X509Certificate(after.certificate).verify(nextCa.publicKey),
      'signed in the token after rotate',
    );
    assert.equal(await running.issuer.readiness(), []);
  } finally {
    await running.close();
  }
});

test('two keys on one module: a re-initialisation for one (a new token) leaves the other signing', async () => {
  const t1 = softHsmToken();
  const a = await generatePkcs11CaKey({ uri: t1.uri('a'), module: t1.module, pinFile: t1.pinFile });
  const data = Buffer.from('tbs');
  assert.ok(verify('sha256', data, a.publicKey, await a.sign(data)));
  // A token initialised after the module loaded: opening its key re-initialises the module.
  const t2 = softHsmToken();
  const b = await generatePkcs11CaKey({ uri: t2.uri('b'), module: t2.module, pinFile: t2.pinFile });
  const sigs = await Promise.all([...Array(16)].map((_, i) => (i % 2 ? a : b).sign(data)));
  for (const [i, sig] of sigs.entries())
    assert.ok(verify('sha256', data, (i % 2 ? a : b).publicKey, sig), `signature ${i}`);
  await a.close();
  assert.ok(verify('sha256', data, b.publicKey, await b.sign(data)), 'b signs after a closed');
  await b.close();
});

test.run();
