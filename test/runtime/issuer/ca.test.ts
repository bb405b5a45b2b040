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

test('a next CA made by a key source (a shared token): published at once, scheduled once every replica found its key', async () => {
  const clock = new VirtualClock();
  const store = await openMemoryStore();
  const token = new Map<string, ReturnType<typeof ca>>();
  const fpOf = (der: Uint8Array) => new X509Certificate(Buffer.from(der)).fingerprint256;
  const active = ca(clock, 1);
  const open = (name: string) =>
    CaSet.open({
      trustDomain: 'fleet.example',
      active,
      store,
      clock,
      random: seededRandom(name),
      maxTtlMs: 24 * H,
      nextSource: async () => {
        const pair = ca(clock, 2 + token.size);
        token.set(fpOf(pair.certificate), pair);
        return pair;
      },
      keyFor: async (der) => token.get(fpOf(der)),
    });
  const a = await open('a');
  const b = await open('b');
  const seq0 = a.sequence;
  // The first call publishes; it schedules once b reports holding the key (it looks it up on the notification).
  let status: Awaited<ReturnType<CaSet['scheduleSwitch']>> | undefined;
  for (let i = 0; i < 50 && status === undefined; i++) {
    status = await a.scheduleSwitch({}).catch(async (e: { code?: string }) => {
      assert.is(e.code, 'ERR_ISSUER_CA_KEY_MISSING');
      await new Promise((r) => setImmediate(r));
      return undefined;
    });
  }
  assert.ok(status !== undefined, 'scheduled');
  assert.is(token.size, 1, 'one next CA made, however many calls');
  assert.ok(a.sequence > seq0);
  assert.equal(
    status.replicas.map((r) => r.holdsNext),
    [true, true],
  );
  const at = Date.parse(status.next?.activateAt as string);
  assert.is(at, clock.now() + 5 * 60_000, 'publication + the default propagation delay');
  await clock.advance(at - clock.now());
  const next = [...token.values()][0] as ReturnType<typeof ca>;
  for (const s of [a, b]) assert.ok(s.signer.certificate.equals(Buffer.from(next.certificate)));
  await a.close();
  await b.close();
});

test.run();
