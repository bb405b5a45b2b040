/**
 * EST (RFC 7030) on the enrollment listener, with real clients: the README's curl + openssl
 * recipe run exactly as written (the commands are read from README.md), the chain checked with
 * `openssl verify`, the certificate used by mosquitto_pub, re-enrollment with curl, the replayed
 * token and the re-enrollment without a client certificate refused; Python's standard library
 * as a second client; the SDK's EST client through a rotation; and the interop details (base64
 * layout both ways, the issuer name byte for byte, 200 only).
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseCertificate } from '../../runtime/svid/certificate.ts';
import { createCsr } from '../../runtime/svid/csr.ts';
import { enroll, reenroll } from '../../transport/enroll/est-client.ts';
import { decodeBase64Body, parseCertsOnly } from '../../transport/enroll/pkcs7.ts';
import { rejects } from '../helpers/rejects.ts';
import { estCall } from './est-call.ts';
import { readmeBlock, sh } from './readme-block.ts';
import { rig } from './setup.ts';

const run = promisify(execFile);
const r = await rig({ limits: { enrollPerMinute: 1000 } });
const at = r.broker.addresses.enrollment as { host: string; port: number };
const GW = `127.0.0.1:${at.port}`;
const gatewayId = r.pki.gateway.id;
const key = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const now = () => r.clock.now();

async function mosquittoPub(dir: string, deviceId: string, certFile = 'svid.pem', keyFile = 'key.pem') {
  return run('mosquitto_pub', [
    ...['--cafile', join(dir, 'ca.pem'), '--cert', join(dir, certFile), '--key', join(dir, keyFile)],
    ...['-h', '127.0.0.1', '-p', String(r.port), '-i', deviceId],
    ...['-t', `devices/${deviceId}/temp`, '-m', '21.5', '-q', '1'],
  ]);
}

const leafOf = (pemFile: string): X509Certificate => new X509Certificate(readFileSync(pemFile));

test('the README recipe enrolls with curl + openssl; the chain verifies; mosquitto_pub uses it; the token is single use', async () => {
  const dir = join(r.tmp, 'curl-1');
  mkdirSync(dir);
  const token = await r.joinToken('curl-1');
  const env = { GW, DEVICE: 'curl-1', TOKEN: token };
  const out = await sh(readmeBlock('enroll'), dir, env);
  assert.is(out.code, 0, out.stderr);
  const leaf = leafOf(join(dir, 'svid.pem'));
  assert.is(leaf.subjectAltName, `URI:${gatewayId}/device/curl-1`);
  // leaf first, then the delegated CA: openssl verify with the bundle roots only
  const verify = await run('openssl', [
    'verify',
    '-CAfile',
    join(dir, 'ca.pem'),
    '-untrusted',
    join(dir, 'svid.pem'),
    join(dir, 'svid.pem'),
  ]);
  assert.match(verify.stdout, /: OK/);
  await mosquittoPub(dir, 'curl-1');
  assert.ok(r.logger.lines.some((l) => l.msg === 'device enrolled' && l.fields.method === 'token'));

  // The same token again: refused, 401 with the code on stderr, the earlier files untouched.
  const again = await sh(readmeBlock('enroll'), dir, env);
  assert.is.not(again.code, 0);
  assert.match(again.stderr, /ERR_ENROLL_TOKEN_INVALID: join token unknown or already used/);
  const replay = await estCall(at.port, 'simpleenroll', {
    body: createCsr(key(), 'curl-1'),
    basic: ['curl-1', token],
  });
  assert.is(replay.status, 401);
  assert.match(String(replay.headers['www-authenticate']), /^Basic /);
  assert.match(replay.text, /^ERR_ENROLL_TOKEN_INVALID: /);
});

test('the README re-enrollment recipe renews with the current certificate and a new key; without a certificate it is refused', async () => {
  const dir = join(r.tmp, 'curl-2');
  mkdirSync(dir);
  const env = { GW, DEVICE: 'curl-2', TOKEN: await r.joinToken('curl-2') };
  assert.is((await sh(readmeBlock('enroll'), dir, env)).code, 0);
  const first = leafOf(join(dir, 'svid.pem'));
  const firstKey = readFileSync(join(dir, 'key.pem'), 'utf8');
  await r.clock.advance(2000);
  const out = await sh(readmeBlock('reenroll'), dir, env);
  assert.is(out.code, 0, out.stderr);
  const second = leafOf(join(dir, 'svid.pem'));
  assert.is(second.subjectAltName, first.subjectAltName);
  assert.is.not(second.serialNumber, first.serialNumber);
  assert.is.not(readFileSync(join(dir, 'key.pem'), 'utf8'), firstKey, 'a new key');
  assert.ok(
    second.checkPrivateKey(
      (await import('node:crypto')).createPrivateKey(readFileSync(join(dir, 'key.pem'))),
    ),
  );
  await mosquittoPub(dir, 'curl-2');
  assert.ok(r.logger.lines.some((l) => l.msg === 'device enrolled' && l.fields.method === 'reenroll'));

  // No client certificate: 401 ERR_ENROLL_CERT_REQUIRED, with curl as with any client.
  const csr = join(dir, 'csr.b64');
  writeFileSync(csr, createCsr(key(), 'curl-2').toString('base64'));
  const bare = await run('curl', [
    ...['-sS', '--cacert', join(dir, 'ca.pem'), '-H', 'Content-Type: application/pkcs10'],
    ...['--data-binary', `@${csr}`, '-w', '\n%{http_code}', `https://${GW}/.well-known/est/simplereenroll`],
  ]);
  assert.match(bare.stdout, /^ERR_ENROLL_CERT_REQUIRED: .*\n401$/s);
});

test('a wrong fingerprint stops the recipe before the token is sent', async () => {
  const dir = join(r.tmp, 'curl-3');
  mkdirSync(dir);
  const token = await r.joinToken('curl-3');
  const forged = `${token.slice(0, token.lastIndexOf('.') + 1)}${Buffer.alloc(32, 7).toString('base64url')}`;
  const enrollRequests = () =>
    r.logger.lines.filter(
      (l) => String(l.fields.path ?? '').includes('simpleenroll') || l.msg === 'device enrolled',
    ).length;
  const before = enrollRequests();
  const out = await sh(readmeBlock('enroll'), dir, { GW, DEVICE: 'curl-3', TOKEN: forged });
  assert.is.not(out.code, 0);
  assert.match(out.stderr, /cacerts: not the gateway of this token/);
  assert.not.ok(out.stderr.includes('ERR_ENROLL'), 'no enrollment request was answered');
  assert.is(enrollRequests(), before);
  // The token was never presented: it still enrolls.
  const ok = await sh(readmeBlock('enroll'), dir, { GW, DEVICE: 'curl-3', TOKEN: token });
  assert.is(ok.code, 0, ok.stderr);
});

test("Python's standard library (urllib + ssl) enrolls and re-enrolls as a second client", async () => {
  const dir = join(r.tmp, 'py-1');
  mkdirSync(dir);
  await run('openssl', [
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    join(dir, 'key.pem'),
    '-subj',
    '/CN=py-1',
    '-outform',
    'DER',
    '-out',
    join(dir, 'csr.der'),
  ]);
  await run('openssl', [
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    join(dir, 'key2.pem'),
    '-subj',
    '/CN=py-1',
    '-outform',
    'DER',
    '-out',
    join(dir, 'csr2.der'),
  ]);
  const script = new URL('./est_client.py', import.meta.url).pathname;
  const token = await r.joinToken('py-1');
  const out = await run('python3', [script, GW, 'py-1', token, dir]);
  assert.match(out.stdout, /enrolled .*\/device\/py-1/);
  assert.match(out.stdout, /reenrolled .*\/device\/py-1/);
  const leaf = leafOf(join(dir, 'svid2.pem'));
  assert.is(leaf.subjectAltName, `URI:${gatewayId}/device/py-1`);
  await mosquittoPub(dir, 'py-1', 'svid2.pem', 'key2.pem');
});

test('the SDK client enrolls over EST and re-enrolls through a rotation (new key, same SPIFFE ID)', async () => {
  const k1 = key();
  const token = await r.joinToken('sdk-1');
  const id = await enroll({ host: '127.0.0.1', port: at.port, deviceId: 'sdk-1', token, key: k1, now });
  assert.is(id.spiffeId, `${gatewayId}/device/sdk-1`);
  assert.is(id.chain.length, 2);
  let current = { key: k1, chain: id.chain };
  for (let i = 0; i < 3; i++) {
    await r.clock.advance(60_000);
    const k = key();
    const next = await reenroll({ host: '127.0.0.1', port: at.port, current, roots: id.roots, key: k, now });
    assert.is(next.spiffeId, id.spiffeId);
    assert.ok(next.notAfter > (i === 0 ? id.notAfter : 0) - 1);
    current = { key: k, chain: next.chain };
  }
  await rejects(
    () => enroll({ host: '127.0.0.1', port: at.port, deviceId: 'sdk-1', token, key: key(), now }),
    'ERR_ENROLL_TOKEN_INVALID',
  );
  await rejects(
    () =>
      enroll({
        host: '127.0.0.1',
        port: at.port,
        deviceId: 'sdk-1',
        token: `${token.slice(0, token.lastIndexOf('.') + 1)}${Buffer.alloc(32, 1).toString('base64url')}`,
        key: key(),
        now,
      }),
    'ERR_ENROLL_GATEWAY_UNTRUSTED',
  );
});

test('interop: answers are base64 in 64-column LF lines with a final newline, 200; CSRs with CRLF or no breaks are accepted; the issuer name is the CA subject byte for byte', async () => {
  const ca = await estCall(at.port, 'cacerts', { method: 'GET' });
  assert.is(ca.status, 200);
  assert.match(String(ca.headers['content-type']), /^application\/pkcs7-mime/);
  const layout = (text: string): void => {
    assert.ok(text.endsWith('\n'), 'final newline');
    assert.not.ok(text.includes('\r'), 'LF only');
    const lines = text.slice(0, -1).split('\n');
    for (const l of lines.slice(0, -1)) assert.is(l.length, 64);
    assert.ok((lines.at(-1) as string).length <= 64 && (lines.at(-1) as string).length > 0);
  };
  layout(ca.text);
  assert.equal(
    parseCertsOnly(decodeBase64Body(ca.text)).map((d) => d.toString('hex')),
    r.pki.bundle.roots.map((x) => x.raw.toString('hex')),
  );
  for (const [n, style] of [
    ['crlf-1', 'crlf'],
    ['flat-1', 'flat'],
  ] as const) {
    const der = createCsr(key(), n).toString('base64');
    const body = style === 'flat' ? der : `${(der.match(/.{1,64}/g) as string[]).join('\r\n')}\r\n`;
    const res = await estCall(at.port, 'simpleenroll', { body, basic: [n, await r.joinToken(n)] });
    assert.is(res.status, 200, res.text);
    assert.is(res.headers['content-type'], 'application/pkcs7-mime; smime-type=certs-only');
    layout(res.text);
    const [leaf, deviceCa] = parseCertsOnly(decodeBase64Body(res.text)) as [Buffer, Buffer];
    assert.ok(parseCertificate(leaf).issuerDer.equals(parseCertificate(deviceCa).subjectDer));
  }
  assert.is((await estCall(at.port, 'csrattrs', { method: 'GET' })).status, 204);
});

test.after(() => r.close());
test.run();
