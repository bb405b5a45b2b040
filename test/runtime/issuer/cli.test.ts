import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { issuerCbor } from '../../../runtime/issuer/store.ts';
import { decodeBundle } from '../../../runtime/svid/bundle.ts';
import { jwkThumbprint } from '../../../runtime/svid/jwt-svid.ts';
import { type CapturedIo, captureIo } from '../../helpers/cli-io.ts';

const dir = mkdtempSync(join(tmpdir(), 'issuer-cli-'));

const io = (signal?: AbortSignal): CapturedIo => captureIo({ cwd: dir, signal });

function config(extra = ''): string {
  const d = join(dir, 'dev');
  const file = join(dir, 'issuer.yaml');
  writeFileSync(
    file,
    `version: 1
trustDomain: fleet.example
listen: { host: 127.0.0.1, port: 0, certificate: ${d}/tls.pem, key: ${d}/tls.key }
ca: { certificate: ${d}/ca.pem, key: ${d}/ca.key }
storeDir: ${join(dir, 'store')}
health: { host: 127.0.0.1, port: 0 }
attestation:
  joinToken: { enabled: true }
log: { level: error }
${extra}`,
  );
  return file;
}

function post(
  url: string,
  path: string,
  body: unknown,
  ca: string,
): Promise<{ status: number; body: unknown }> {
  const payload = Buffer.from(issuerCbor.encode(body));
  const u = new URL(path, url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        ca,
        agent: false,
        headers: { 'content-type': 'application/cbor' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: issuerCbor.decode(Buffer.concat(chunks)) }),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

test('issuer --help is complete', async () => {
  const t = io();
  assert.is(await main(['issuer', '--help'], t), 0);
  const text = t.stdout.join('\n');
  for (const w of [
    '--config',
    'token create',
    'register',
    'disable',
    'revoke',
    'ca rotate',
    'jwt rotate',
    'audit',
    'dev-ca',
    'Exit codes',
  ])
    assert.ok(text.includes(w), w);
});

test('dev-ca writes a CA and TLS material with 0600 keys', async () => {
  const t = io();
  assert.is(
    await main(['issuer', 'dev-ca', '--dir', join(dir, 'dev'), '--trust-domain', 'fleet.example'], t),
    0,
  );
  assert.is(statSync(join(dir, 'dev', 'ca.key')).mode & 0o777, 0o600);
  assert.is(statSync(join(dir, 'dev', 'tls.key')).mode & 0o777, 0o600);
  assert.is(statSync(join(dir, 'dev', 'jwt.key')).mode & 0o777, 0o600, 'the JWT-SVID signing key');
});

test('operator token (--offline, issuer stopped), then the daemon serves a join-token attestation, then stops on signal', async () => {
  const cfg = config();
  const t = io();
  assert.is(
    await main(
      ['issuer', 'token', 'create', '--offline', '--config', cfg, '--name', 'gw-1', '--ttl', '10m'],
      t,
    ),
    0,
    t.stderr.join(),
  );
  const token = t.stdout[0] as string;
  assert.match(token, /^ewj1\./);
  const stop = new AbortController();
  const d = io(stop.signal);
  const done = main(['issuer', '--config', cfg], d);
  const url = /listening on (https:\/\/\S+)/.exec(await d.outLine(/listening on https:/))?.[1];
  assert.ok(url, d.stdout.join() + d.stderr.join());
  const ca = readFileSync(join(dir, 'dev', 'ca.pem'), 'utf8');
  const begin = await post(url as string, '/v1/attest/begin', { method: 'join-token', token }, ca);
  assert.is(begin.status, 200);
  const bad = await post(url as string, '/v1/attest/begin', { method: 'join-token', token: 'nope' }, ca);
  assert.is((bad.body as { error: { code: string } }).error.code, 'ERR_ISSUER_TOKEN_INVALID');
  stop.abort();
  assert.is(await done, 0);
  const a = io();
  assert.is(await main(['issuer', 'audit', '--offline', '--config', cfg], a), 0);
  const events = a.stdout.map((l) => JSON.parse(l));
  assert.ok(events.some((e) => e.event === 'token' && e.gateway === 'gw-1' && e.by === 'offline'));
  assert.ok(events.some((e) => e.event === 'refuse' && e.code === 'ERR_ISSUER_TOKEN_INVALID'));
});

test('jwt rotate through the live admin socket: the next key signs, both stay in the bundle, audited', async () => {
  const next = join(dir, 'jwt-next.key');
  writeFileSync(
    next,
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }),
    { mode: 0o600 },
  );
  const cfg = config(`jwtSvid: { key: ${join(dir, 'dev', 'jwt.key')}, next: ${next}, ttl: 2m }\n`);
  const stop = new AbortController();
  const d = io(stop.signal);
  const done = main(['issuer', '--config', cfg], d);
  const url = /listening on (https:\/\/\S+)/.exec(await d.outLine(/listening on https:/))?.[1];
  assert.ok(url, d.stdout.join() + d.stderr.join());
  const ca = readFileSync(join(dir, 'dev', 'ca.pem'), 'utf8');
  const kids = async () =>
    decodeBundle(await getText(url as string, '/v1/bundle', ca))
      .jwtKeys.map((k) => k.kid)
      .sort();
  const kidNext = jwkThumbprint(createPrivateKey(readFileSync(next)));
  const kidKey = jwkThumbprint(createPrivateKey(readFileSync(join(dir, 'dev', 'jwt.key'))));
  assert.equal(await kids(), [kidKey, kidNext].sort());
  const r = io();
  assert.is(await main(['issuer', 'jwt', 'rotate', '--config', cfg], r), 0, r.stderr.join());
  assert.match(r.stdout.join(), `JWT-SVID key ${kidNext} signs now; ${kidKey} retired`);
  assert.equal(await kids(), [kidKey, kidNext].sort(), 'the retired key stays while its tokens live');
  const again = io();
  assert.is(await main(['issuer', 'jwt', 'rotate', '--config', cfg], again), 1);
  assert.match(again.stderr.join(), /ERR_ISSUER_JWT_KEY/);
  const a = io();
  assert.is(await main(['issuer', 'audit', '--config', cfg], a), 0);
  assert.ok(
    a.stdout.map((l) => JSON.parse(l)).some((e) => e.event === 'jwt' && String(e.detail).includes(kidNext)),
  );
  stop.abort();
  assert.is(await done, 0);
});

const getText = (url: string, path: string, ca: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const u = new URL(path, url);
    request({ host: u.hostname, port: u.port, path: u.pathname, ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    })
      .on('error', reject)
      .end();
  });

test('a CA key readable by others is refused with ERR_ISSUER_KEY_PERMISSIONS', async () => {
  const cfg = config();
  chmodSync(join(dir, 'dev', 'ca.key'), 0o644);
  const t = io();
  assert.is(await main(['issuer', 'audit', '--offline', '--config', cfg], t), 1);
  assert.match(t.stderr.join('\n'), /ERR_ISSUER_KEY_PERMISSIONS/);
  chmodSync(join(dir, 'dev', 'ca.key'), 0o600);
});

test('usage errors exit 2', async () => {
  const cfg = config();
  assert.is(await main(['issuer'], io()), 2);
  assert.is(await main(['issuer', 'register', '--config', cfg, '--name', 'x'], io()), 2);
  assert.is(await main(['issuer', 'frobnicate', '--config', cfg], io()), 2);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
