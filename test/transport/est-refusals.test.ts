/**
 * Every EST refusal with its HTTP status and its typed code (in the plain-text body and in the
 * log), and the bad inputs: no credentials, garbage base64, a mis-signed CSR, a CSR for another
 * device's name, another device's token, an expired token, a revoked device (token and
 * re-enrollment), oversized bodies (declared and streamed), a slow body, the rate limit, a
 * factory certificate from another root, a re-enrollment with another gateway's device
 * certificate, wrong method / path / content type. A refused request never burns its token.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { request } from 'node:https';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StaticRevocationSource } from '../../runtime/sources/static.ts';
import { createCsr } from '../../runtime/svid/csr.ts';
import { VirtualClock } from '../../sim/clock/virtual-clock.ts';
import { enroll, reenroll } from '../../transport/enroll/est-client.ts';
import { MAX_BODY_BYTES } from '../../transport/enroll/est-server.ts';
import { refusingRevoked } from '../../transport/enroll/revoked.ts';
import { makeCert } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';
import { type EstAnswer, estCall } from './est-call.ts';
import { rig } from './setup.ts';

const run = promisify(execFile);
const mfg = await makeCert({
  subject: 'CN=ACME devices root',
  ca: true,
  notBefore: Date.now() - 3600_000,
  notAfter: Date.now() + 86400_000,
});
const otherMfg = await makeCert({
  subject: 'CN=ACME devices root',
  ca: true,
  notBefore: Date.now() - 3600_000,
  notAfter: Date.now() + 86400_000,
});
const revoked = new StaticRevocationSource();
const r = await rig((pki) => ({
  revocationSource: revoked,
  // The signer's clock a little behind the rig's (made just before): what it signs is never
  // "not valid yet" at the rig's time, whichever second the two were made in.
  deviceSigner: refusingRevoked(pki.signer(new VirtualClock(Date.now() - 2000)), revoked),
  limits: { enrollPerMinute: 1000 },
  factory: { roots: [mfg.cert], idField: 'cn', allowList: ['factory-1'] },
}));
const port = (r.broker.addresses.enrollment as { port: number }).port;
const gw = r.pki.gateway.id;
const key = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const csrFor = (cn: string) => createCsr(key(), cn);

/** The answer has this status and `CODE: ...` body, and the log has the refusal with that code. */
function refused(a: EstAnswer, status: number, code: string): void {
  assert.is(a.status, status, a.text);
  assert.match(a.text, new RegExp(`^${code}: `));
  assert.is(a.headers['content-type'], 'text/plain; charset=utf-8');
  assert.ok(
    r.logger.lines.some(
      (l) => l.msg === 'enrollment refused' && l.fields.code === code && l.fields.status === status,
    ),
    `log line with ${code} ${status}`,
  );
}

async function enrolls(deviceId: string, token: string): Promise<void> {
  const a = await estCall(port, 'simpleenroll', { body: csrFor(deviceId), basic: [deviceId, token] });
  assert.is(a.status, 200, a.text);
}

async function waitForLog(pred: (l: (typeof r.logger.lines)[number]) => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !r.logger.lines.some(pred); i++) await new Promise((x) => setImmediate(x));
  assert.ok(r.logger.lines.some(pred), 'log line not seen');
}

test('no credentials: 401 with WWW-Authenticate: Basic', async () => {
  const a = await estCall(port, 'simpleenroll', { body: csrFor('x') });
  refused(a, 401, 'ERR_ENROLL_TOKEN_INVALID');
  assert.match(String(a.headers['www-authenticate']), /^Basic realm=/);
  refused(
    await estCall(port, 'simpleenroll', { body: csrFor('x'), headers: { Authorization: 'Bearer abc' } }),
    401,
    'ERR_ENROLL_TOKEN_INVALID',
  );
});

test('garbage base64 and a mis-signed CSR: 400; the token stays usable', async () => {
  const token = await r.joinToken('bad-1');
  refused(
    await estCall(port, 'simpleenroll', { body: 'this is not base64!!\n', basic: ['bad-1', token] }),
    400,
    'ERR_ENROLL_PROTOCOL',
  );
  refused(
    await estCall(port, 'simpleenroll', { body: Buffer.from('not a CSR at all'), basic: ['bad-1', token] }),
    400,
    'ERR_ENROLL_CSR_INVALID',
  );
  const csr = csrFor('bad-1');
  csr.writeUInt8((csr.at(-5) as number) ^ 0xff, csr.length - 5); // inside the signature
  refused(
    await estCall(port, 'simpleenroll', { body: csr, basic: ['bad-1', token] }),
    400,
    'ERR_ENROLL_CSR_INVALID',
  );
  await enrolls('bad-1', token);
});

test("a CSR for another device's name (CN or URI SAN): 403; the token stays usable", async () => {
  const token = await r.joinToken('dev-a');
  refused(
    await estCall(port, 'simpleenroll', { body: csrFor('dev-b'), basic: ['dev-a', token] }),
    403,
    'ERR_ENROLL_CSR_IDENTITY',
  );
  const dir = join(r.tmp, 'san');
  await run('mkdir', ['-p', dir]);
  await run('openssl', [
    ...['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'],
    ...['-keyout', join(dir, 'k.pem'), '-subj', '/CN=dev-a', '-outform', 'DER', '-out', join(dir, 'csr.der')],
    ...['-addext', `subjectAltName=URI:${gw}/device/dev-b`],
  ]);
  const { readFileSync } = await import('node:fs');
  refused(
    await estCall(port, 'simpleenroll', {
      body: readFileSync(join(dir, 'csr.der')),
      basic: ['dev-a', token],
    }),
    403,
    'ERR_ENROLL_CSR_IDENTITY',
  );
  await enrolls('dev-a', token);
});

test("another device's token, an expired token, a malformed token: 401; the token stays usable", async () => {
  const token = await r.joinToken('dev-c');
  refused(
    await estCall(port, 'simpleenroll', { body: csrFor('dev-d'), basic: ['dev-d', token] }),
    401,
    'ERR_ENROLL_TOKEN_INVALID',
  );
  refused(
    await estCall(port, 'simpleenroll', { body: csrFor('x'), basic: ['../etc', token] }),
    401,
    'ERR_ENROLL_TOKEN_INVALID',
  );
  refused(
    await estCall(port, 'simpleenroll', { body: csrFor('dev-c'), basic: ['dev-c', 'ewt1.nope'] }),
    401,
    'ERR_ENROLL_TOKEN_INVALID',
  );
  await enrolls('dev-c', token);
  const short = await r.joinToken('dev-e', 1000);
  await r.clock.advance(1001);
  const a = await estCall(port, 'simpleenroll', { body: csrFor('dev-e'), basic: ['dev-e', short] });
  refused(a, 401, 'ERR_ENROLL_TOKEN_INVALID');
  assert.match(a.text, /expired/);
});

test('a revoked device: 403 with its token (left unconsumed) and on re-enrollment', async () => {
  const token = await r.joinToken('gone-1');
  revoked.revoke({ spiffeIds: [`${gw}/device/gone-1`] });
  refused(
    await estCall(port, 'simpleenroll', { body: csrFor('gone-1'), basic: ['gone-1', token] }),
    403,
    'ERR_ENROLL_DEVICE_REVOKED',
  );
  // a device enrolled here, then revoked: its certificate no longer re-enrolls
  const k = key();
  const dev = await enroll({
    host: '127.0.0.1',
    port,
    deviceId: 'gone-3',
    token: await r.joinToken('gone-3'),
    key: k,
    now: () => r.clock.now(),
  });
  const current = { key: k, chain: dev.chain };
  const renewed = await reenroll({
    host: '127.0.0.1',
    port,
    current,
    roots: dev.roots,
    key: k,
    now: () => r.clock.now(),
  });
  assert.is(renewed.spiffeId, dev.spiffeId);
  revoked.revoke({ spiffeIds: [dev.spiffeId] });
  refused(
    await estCall(port, 'simplereenroll', {
      body: csrFor('gone-3'),
      cert: dev.chainPem,
      key: k.export({ type: 'pkcs8', format: 'pem' }) as string,
    }),
    403,
    'ERR_ENROLL_DEVICE_REVOKED',
  );
});

test("re-enrollment without a certificate, or with another gateway's device certificate: 401", async () => {
  refused(await estCall(port, 'simplereenroll', { body: csrFor('x') }), 401, 'ERR_ENROLL_CERT_REQUIRED');
  const other = await r.pki.device('stranger', { ca: r.pki.otherCa });
  refused(
    await estCall(port, 'simplereenroll', {
      body: csrFor('stranger'),
      cert: other.chain.map((c) => c.toString()).join(''),
      key: other.pem.key,
    }),
    401,
    'ERR_ENROLL_CERT_REQUIRED',
  );
  // Basic credentials do not re-enroll
  refused(
    await estCall(port, 'simplereenroll', { body: csrFor('x'), basic: ['x', await r.joinToken('x')] }),
    401,
    'ERR_ENROLL_CERT_REQUIRED',
  );
});

test('factory certificates: from the manufacturer root 200, from another root 403', async () => {
  const good = await makeCert({
    subject: 'CN=factory-1',
    issuer: mfg,
    notBefore: Date.now() - 60_000,
    notAfter: Date.now() + 3600_000,
  });
  const a = await estCall(port, 'simpleenroll', {
    body: csrFor('factory-1'),
    cert: good.cert.toString(),
    key: good.key.export({ type: 'pkcs8', format: 'pem' }) as string,
  });
  assert.is(a.status, 200, a.text);
  const forged = await makeCert({
    subject: 'CN=factory-1',
    issuer: otherMfg,
    notBefore: Date.now() - 60_000,
    notAfter: Date.now() + 3600_000,
  });
  refused(
    await estCall(port, 'simpleenroll', {
      body: csrFor('factory-1'),
      cert: forged.cert.toString(),
      key: forged.key.export({ type: 'pkcs8', format: 'pem' }) as string,
    }),
    403,
    'ERR_ENROLL_FACTORY_REFUSED',
  );
});

test('oversized bodies: 413, declared or streamed; the token stays usable', async () => {
  const token = await r.joinToken('big-1');
  const big = 'A'.repeat(MAX_BODY_BYTES + 1);
  refused(
    await estCall(port, 'simpleenroll', { body: big, basic: ['big-1', token] }),
    413,
    'ERR_ENROLL_BUDGET',
  );
  // chunked: no Content-Length, the bound applies to what arrives
  const streamed = await new Promise<EstAnswer>((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/.well-known/est/simpleenroll',
        rejectUnauthorized: false,
        agent: false,
        headers: {
          'Content-Type': 'application/pkcs10',
          'Transfer-Encoding': 'chunked',
          Authorization: `Basic ${Buffer.from(`big-1:${token}`).toString('base64')}`,
        },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.once('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(parts).toString(),
          }),
        );
      },
    );
    req.once('error', reject);
    for (let i = 0; i < 40; i++) req.write('A'.repeat(1024));
    req.end();
  });
  refused(streamed, 413, 'ERR_ENROLL_BUDGET');
  // a request head over 8 KiB: 431, logged as a protocol refusal
  const head = await estCall(port, 'simpleenroll', {
    body: csrFor('big-1'),
    headers: { 'X-Pad': 'a'.repeat(9000) },
  });
  assert.is(head.status, 431);
  assert.ok(r.logger.lines.some((l) => l.msg === 'enrollment refused' && l.fields.status === 431));
  await enrolls('big-1', token);
});

test('a slow body: answered 408 at the time budget, then closed', async () => {
  const before = r.logger.lines.length;
  const answer = new Promise<EstAnswer>((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/.well-known/est/simpleenroll',
        rejectUnauthorized: false,
        agent: false,
        headers: {
          'Content-Type': 'application/pkcs10',
          'Content-Length': '1000',
          Authorization: `Basic ${Buffer.from('slow-1:ewt1.x.y').toString('base64')}`,
        },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.once('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(parts).toString(),
          }),
        );
      },
    );
    req.once('error', reject);
    req.write('MIIB');
  });
  await waitForLog((l) => l.msg === 'enrollment request' && r.logger.lines.indexOf(l) >= before);
  await r.clock.advance(10_001); // broker.handshakeTimeoutMs default
  const a = await answer;
  assert.is(a.status, 408);
  assert.match(a.text, /^ERR_ENROLL_BUDGET: /);
  assert.ok(
    r.logger.lines.some(
      (l) => l.msg === 'enrollment connection closed' && l.fields.code === 'ERR_ENROLL_BUDGET',
    ),
  );
});

test('wrong path 404, wrong method 405, wrong content type 415, csrattrs 204', async () => {
  refused(await estCall(port, '/.well-known/est/serverkeygen', { body: 'x' }), 404, 'ERR_ENROLL_PROTOCOL');
  refused(await estCall(port, '/index.html', { method: 'GET' }), 404, 'ERR_ENROLL_PROTOCOL');
  const m = await estCall(port, 'cacerts', { method: 'POST', body: 'x' });
  refused(m, 405, 'ERR_ENROLL_PROTOCOL');
  assert.is(m.headers.allow, 'GET');
  refused(
    await estCall(port, 'simpleenroll', { body: csrFor('x'), contentType: 'text/plain', basic: ['x', 'y'] }),
    415,
    'ERR_ENROLL_PROTOCOL',
  );
  assert.is((await estCall(port, 'csrattrs', { method: 'GET' })).status, 204);
});

test('rate limited: 429 with Retry-After, per address per minute', async () => {
  const r2 = await rig({ limits: { enrollPerMinute: 2 } });
  const p2 = (r2.broker.addresses.enrollment as { port: number }).port;
  try {
    const t = await r2.joinToken('rl-1');
    for (let i = 0; i < 2; i++) assert.is((await estCall(p2, 'simpleenroll', { body: 'x' })).status, 401);
    const a = await estCall(p2, 'simpleenroll', { body: csrFor('rl-1'), basic: ['rl-1', t] });
    assert.is(a.status, 429);
    assert.is(a.headers['retry-after'], '60');
    assert.match(a.text, /^ERR_ENROLL_RATE_LIMITED: /);
    // cacerts is not an enrollment attempt
    assert.is((await estCall(p2, 'cacerts', { method: 'GET' })).status, 200);
    await r2.clock.advance(60_000);
    const ok = await estCall(p2, 'simpleenroll', { body: csrFor('rl-1'), basic: ['rl-1', t] });
    assert.is(ok.status, 200, ok.text);
    await rejects(
      () =>
        enroll({
          host: '127.0.0.1',
          port: p2,
          deviceId: 'rl-1',
          token: t,
          key: key(),
          now: () => r2.clock.now(),
        }),
      'ERR_ENROLL_TOKEN_INVALID',
    );
  } finally {
    await r2.close();
  }
});

test.after(() => r.close());
test.run();
