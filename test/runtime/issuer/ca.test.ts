import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSet } from '../../../runtime/issuer/ca.ts';
import { readCertificatesFile } from '../../../runtime/issuer/files.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { decodeBundle } from '../../../runtime/svid/bundle.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { rejects } from '../../helpers/rejects.ts';

const H = 3_600_000;

function ca(clock: VirtualClock, generation: number) {
  const privateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const certificate = createRootCa({
    trustDomain: 'fleet.example',
    privateKey,
    notBefore: clock.now() - 1000,
    notAfter: clock.now() + 400 * 24 * H,
    random: seededRandom(`ca-${generation}`),
    generation,
  });
  return { certificate, privateKey };
}

test('the cached bundle JSON follows every change of the root set, a lapsed retired root included', async () => {
  const clock = new VirtualClock();
  const cas = await CaSet.open({
    trustDomain: 'fleet.example',
    active: ca(clock, 1),
    store: await openMemoryStore(),
    clock,
    random: seededRandom('cas'),
    maxTtlMs: 24 * H,
  });
  const b0 = cas.bundleJson();
  assert.is(cas.bundleJson(), b0, 'unchanged while the roots are');
  await cas.prepareNext(ca(clock, 2));
  const b1 = decodeBundle(cas.bundleJson());
  assert.is(b1.roots.length, 2);
  assert.is(b1.sequence, cas.sequence);
  assert.ok(b1.sequence > decodeBundle(b0).sequence);
  await cas.activateNext();
  const b2 = cas.bundleJson();
  assert.is(decodeBundle(b2).roots.length, 2, 'the retired CA stays while what it signed lives');
  await clock.advance(25 * H); // the retired CA lapses; prune has not run
  const b3 = decodeBundle(cas.bundleJson());
  assert.is(b3.roots.length, 1);
  assert.is(b3.roots[0]?.raw.equals(cas.signer.certificate), true);
});

test('CA files: every PEM certificate in order; none, or one that does not parse, is ERR_ISSUER_CA_INVALID', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'issuer-files-'));
  try {
    const clock = new VirtualClock();
    const [a, b] = [ca(clock, 1), ca(clock, 2)].map((c) => new X509Certificate(c.certificate));
    const file = (name: string, text: string): string => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const both = await readCertificatesFile(file('both.pem', `comment\n${a?.toString()}${b?.toString()}`));
    assert.equal(
      both.map((c) => c.fingerprint256),
      [a?.fingerprint256, b?.fingerprint256],
    );
    await rejects(
      () => readCertificatesFile(file('none.pem', 'no certificate here\n')),
      'ERR_ISSUER_CA_INVALID',
    );
    const broken = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
    await rejects(() => readCertificatesFile(file('broken.pem', broken)), 'ERR_ISSUER_CA_INVALID');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
