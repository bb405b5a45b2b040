/**
 * `RootSwitch` on its own (root-switch.ts): a delegated CA under the bundle's signing root is
 * left alone; one signed by another root (the issuer switched CAs, same subject name) is due at
 * one draw within the window, the same for the same CA and root however often the bundle is
 * seen, and drawn again for another CA or root; a bundle with no root says nothing.
 */
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { DelegatedCa } from '../../../runtime/agent/identity.ts';
import { RootSwitch, underSigningRoot } from '../../../runtime/agent/root-switch.ts';
import type { X509Bundle } from '../../../runtime/sources/types.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { softwareCaKey } from '../../../runtime/svid/ca-key.ts';
import { createCaSigner, spkiOf } from '../../../runtime/svid/signer.ts';
import { seededRandom } from '../../../sim/random.ts';

const TD = 'fleet.example';
const NOW = Date.now();
const HOUR = 3_600_000;
const key = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

function root(label: string): { cert: X509Certificate; key: KeyObject } {
  const k = key();
  const der = createRootCa({
    trustDomain: TD,
    privateKey: k,
    notBefore: NOW - HOUR,
    notAfter: NOW + 24 * HOUR,
    random: seededRandom(label),
  });
  return { cert: new X509Certificate(der), key: k };
}

async function delegated(
  under: { cert: X509Certificate; key: KeyObject },
  label: string,
): Promise<DelegatedCa> {
  const signer = createCaSigner({
    certificate: under.cert.raw,
    key: softwareCaKey(under.key),
    trustDomain: TD,
    random: seededRandom(label),
  });
  const caKey = key();
  const issued = await signer.issue({
    profile: 'device-ca',
    spiffeId: `spiffe://${TD}/gateway/gw-1`,
    spki: spkiOf(caKey),
    notBefore: NOW - 60_000,
    notAfter: NOW + 12 * HOUR,
    permittedServerNames: [],
  });
  const cert = new X509Certificate(issued.der);
  return {
    chain: [cert],
    chainDer: [issued.der],
    key: softwareCaKey(caKey),
    notBefore: NOW - 60_000,
    notAfter: issued.notAfter,
  };
}

const bundle = (...roots: X509Certificate[]): X509Bundle => ({
  trustDomain: TD,
  roots,
  sequence: roots.length,
});

test('a CA under another root than the signing one is due once within the window; under the signing root, or no root: nothing', async () => {
  const old = root('old');
  const next = root('next');
  assert.is(old.cert.subject, next.cert.subject, 'same subject name: the signature decides');
  const caOld = await delegated(old, 'ca-old');
  const caOld2 = await delegated(old, 'ca-old-2');
  const caNew = await delegated(next, 'ca-new');
  assert.is(underSigningRoot(caOld, bundle(old.cert, next.cert)), true);
  assert.is(underSigningRoot(caOld, bundle(next.cert, old.cert)), false);
  assert.is(underSigningRoot(caNew, bundle(next.cert, old.cert)), true);
  assert.is(underSigningRoot(caOld, bundle()), undefined);

  const window = 10 * 60_000;
  const follow = new RootSwitch(window, seededRandom('draws'));
  assert.is(follow.dueAt(caOld, bundle(old.cert, next.cert), NOW), undefined, 'before the switch');
  assert.is(follow.dueAt(caOld, undefined, NOW), undefined);
  assert.is(follow.dueAt(caOld, bundle(), NOW), undefined);
  const first = follow.dueAt(caOld, bundle(next.cert, old.cert), NOW);
  assert.ok(first?.fresh);
  assert.ok(first.at >= NOW && first.at < NOW + window, 'within the window');
  const again = follow.dueAt(caOld, bundle(next.cert, old.cert), NOW + 60_000);
  assert.equal(again, { at: first.at, fresh: false }, 'the same bundle seen again does not move the time');
  const other = follow.dueAt(caOld2, bundle(next.cert, old.cert), NOW + 120_000);
  assert.ok(other?.fresh, 'another CA (a renewal that the old CA still signed) is drawn again');
  assert.ok(other.at >= NOW + 120_000 && other.at < NOW + 120_000 + window);
  assert.is(follow.dueAt(caNew, bundle(next.cert, old.cert), NOW), undefined, 'renewed under the new root');
  assert.throws(() => new RootSwitch(-1, seededRandom('x')), /rootSwitchWindowMs/);
});

test.run();
