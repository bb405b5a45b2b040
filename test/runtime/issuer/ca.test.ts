import { generateKeyPairSync } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSet } from '../../../runtime/issuer/ca.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { decodeBundle } from '../../../runtime/svid/bundle.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';

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

test('bundle JSON is encoded once per root set and follows every change, a lapsed retired root included', async () => {
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
  assert.is(cas.bundleJson(), b0, 'the same string, not a new encoding');
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

test.run();
