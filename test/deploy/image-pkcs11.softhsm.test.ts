/**
 * The image's optional PKCS#11 binding works from the bundle (issue 19): the issuer build
 * (`deploy/image/build.ts`, what the image ships) is made in a directory of its own, away from
 * the project's node_modules, and its `bin/edgeward issuer ca create --pkcs11` generates a CA
 * key in a SoftHSM2 token and signs the certificate there through the shipped pkcs11js.
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildIssuer } from '../../deploy/image/build.ts';
import { softHsmToken } from '../helpers/softhsm.ts';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-image-pkcs11-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('bin/edgeward of the issuer build makes a CA in a SoftHSM2 token through the shipped pkcs11js', async () => {
  const build = await buildIssuer({ out: join(dir, 'issuer'), node: process.execPath });
  assert.ok(build.pkcs11js, 'pkcs11js was built by npm install here, so it is shipped');
  assert.ok(existsSync(join(build.dir, 'node_modules/pkcs11js/build/Release/pkcs11.node')));
  const t = softHsmToken();
  const out = join(dir, 'ca.pem');
  const ok = spawnSync(
    join(build.dir, 'bin', 'edgeward'),
    [
      'issuer',
      'ca',
      'create',
      '--pkcs11',
      t.uri('issuer-ca'),
      '--module',
      t.module,
      '--pin-file',
      t.pinFile,
      '--trust-domain',
      'fleet.example',
      '--out',
      out,
    ],
    { cwd: dir, env: process.env, encoding: 'utf8', timeout: 60_000 },
  );
  assert.is(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /CA key generated in the token/);
  const ca = new X509Certificate(readFileSync(out));
  assert.ok(ca.ca && ca.verify(ca.publicKey), 'self-signed in the token');
});

test.run();
