/** acceptBundle: the device's checks of a `$edgeward/bundle` payload before it rewrites bundle.pem. */
import { encode } from 'cbor-x';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { acceptBundle } from '../../transport/device/bundle.ts';
import { buildPki } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';

const pki = await buildPki();
const td = pki.trustDomain;
const root = pki.root.cert;
const other = (await buildPki({ trustDomain: td })).root.cert;
const msg = (o: Record<string, unknown>): Uint8Array =>
  encode({ trustDomain: td, sequence: 3, roots: [new Uint8Array(root.raw)], ...o });
const current = { trustDomain: td, roots: [root], sequence: undefined };

test('the retained copy of the bundle in use is accepted but not new', () => {
  const r = acceptBundle(msg({}), current);
  assert.is(r.changed, false);
  assert.is(r.sequence, 3);
});

test('new roots are new; the same set in another order is not', () => {
  const two = [new Uint8Array(root.raw), new Uint8Array(other.raw)];
  const r = acceptBundle(msg({ roots: two }), current);
  assert.is(r.changed, true);
  assert.equal(
    r.roots.map((c) => c.fingerprint256),
    [root.fingerprint256, other.fingerprint256],
  );
  const again = acceptBundle(msg({ roots: [...two].reverse(), sequence: 4 }), { ...current, roots: r.roots });
  assert.is(again.changed, false);
});

test('malformed, foreign, rolled back or non-CA bundles: ERR_DEVICE_BUNDLE_INVALID', async () => {
  const bad: [string, Uint8Array, number | undefined][] = [
    ['garbage', new Uint8Array([0xff, 0x00, 0x13]), undefined],
    ['not a map', encode(42), undefined],
    ['other trust domain', msg({ trustDomain: 'evil.example' }), undefined],
    ['negative sequence', msg({ sequence: -1 }), undefined],
    ['fractional sequence', msg({ sequence: 1.5 }), undefined],
    ['older than the one in use', msg({ sequence: 2 }), 3],
    ['no roots', msg({ roots: [] }), undefined],
    ['roots not bytes', msg({ roots: ['PEM?'] }), undefined],
    ['root does not parse', msg({ roots: [new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00])] }), undefined],
    ['leaf as root', msg({ roots: [new Uint8Array(pki.gateway.cert.raw)] }), undefined],
    ['too many roots', msg({ roots: Array.from({ length: 33 }, () => new Uint8Array(root.raw)) }), undefined],
  ];
  for (const [name, payload, sequence] of bad) {
    const err = await rejects<Error>(
      () => acceptBundle(payload, { ...current, sequence }),
      'ERR_DEVICE_BUNDLE_INVALID',
    );
    assert.ok(err.message.length > 0, name);
  }
  // The same sequence again (a reconnect's retained copy) is fine.
  assert.is(acceptBundle(msg({}), { ...current, sequence: 3 }).changed, false);
});

test.run();
