/**
 * `edgeward issuer ca create --out DIR` (issue 19, file keys): a P-256 CA key (0600) and its
 * self-signed certificate for the trust domain, never replacing an existing file; the CA made
 * is usable as `ca.next`: an issuer publishes it and signs with it after `ca rotate`.
 */
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { createDevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { readPrivateKeyFile } from '../../../runtime/issuer/files.ts';
import { Issuer } from '../../../runtime/issuer/issuer.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { captureIo } from '../../helpers/cli-io.ts';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-ca-create-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('ca create --out DIR: a 0600 P-256 key and its CA certificate; existing files are never replaced', async () => {
  const out = join(dir, 'ca-2');
  const args = ['issuer', 'ca', 'create', '--out', out, '--trust-domain', 'fleet.example'];
  const io = captureIo({ cwd: dir });
  assert.is(await main([...args, '--generation', '2', '--ttl', '90d'], io), 0, io.stderr.join('\n'));
  assert.match(io.stdout.join('\n'), /ca\.key \(0600\)/);
  assert.is(statSync(join(out, 'ca.key')).mode & 0o777, 0o600);
  const ca = new X509Certificate(readFileSync(join(out, 'ca.pem')));
  assert.ok(ca.ca && ca.verify(ca.publicKey), 'a self-signed CA');
  assert.match(ca.subject, /CN=edgeward CA fleet\.example #2/);
  assert.is(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const days = (Date.parse(ca.validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 89 && days <= 90, `90 days (${days})`);
  assert.ok(ca.checkPrivateKey(await readPrivateKeyFile(join(out, 'ca.key'))));

  const key = readFileSync(join(out, 'ca.key'));
  const again = captureIo({ cwd: dir });
  assert.is(await main(args, again), 1);
  assert.match(again.stderr.join('\n'), /ERR_ISSUER_CA_INVALID/);
  assert.ok(readFileSync(join(out, 'ca.key')).equals(key), 'the key is kept');
  // Only a certificate there: nothing is written either.
  const half = join(dir, 'half');
  mkdirSync(half);
  writeFileSync(join(half, 'ca.pem'), 'x');
  const halfIo = captureIo({ cwd: dir });
  assert.is(
    await main(['issuer', 'ca', 'create', '--out', half, '--trust-domain', 'fleet.example'], halfIo),
    1,
  );
  assert.match(halfIo.stderr.join('\n'), /ERR_ISSUER_CA_INVALID/);
  assert.throws(
    () => statSync(join(half, 'ca.key')),
    (e: { code?: string }) => e.code === 'ENOENT',
  );
  // Usage: no DIR, a bad generation.
  assert.is(
    await main(['issuer', 'ca', 'create', '--trust-domain', 'fleet.example'], captureIo({ cwd: dir })),
    2,
  );
  assert.is(await main([...args, '--generation', 'x'], captureIo({ cwd: dir })), 2);
});

test('the CA made is a working ca.next: published, then signing after ca rotate', async () => {
  const dev = await createDevIssuerFiles(join(dir, 'dev'), {
    trustDomain: 'fleet.example',
    clock: systemClock,
    random: cryptoRandom,
  });
  const out = join(dir, 'next');
  assert.is(
    await main(
      ['issuer', 'ca', 'create', '--out', out, '--trust-domain', 'fleet.example', '--generation', '2'],
      captureIo({ cwd: dir }),
    ),
    0,
  );
  const next = {
    certificate: new X509Certificate(readFileSync(join(out, 'ca.pem'))).raw,
    privateKey: await readPrivateKeyFile(join(out, 'ca.key')),
  };
  const store = await openMemoryStore();
  const issuer = await Issuer.create({
    trustDomain: 'fleet.example',
    store,
    ca: dev.ca,
    nextCa: next,
    clock: systemClock,
    random: cryptoRandom,
    methods: {},
  });
  try {
    assert.is(issuer.roots().length, 2, 'published in the bundle');
    await issuer.rotateCa('op-test', { immediate: true });
    assert.ok(issuer.caCertificate.equals(next.certificate), 'signs with it');
  } finally {
    await issuer.close();
    await store.close();
  }
});

test.run();
