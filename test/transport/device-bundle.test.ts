/**
 * acceptBundle: the device's checks of a bundle message before it rewrites bundle.pem — shape,
 * then authentication (signed by its own gateway under a chain to a root it already trusts),
 * then the sequence. Messages are built by the broker's own `bundleMessage` (what the gateway
 * publishes) or forged as an attacker would.
 */
import { encode } from 'cbor-x';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { X509Bundle } from '../../runtime/sources/types.ts';
import { acceptBundle } from '../../transport/device/bundle.ts';
import { bundleMessage } from '../../transport/mqtt/renewal.ts';
import { buildPki, makeCert } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';

const pki = await buildPki();
const td = pki.trustDomain;
const root = pki.root.cert;
const other = (await buildPki({ trustDomain: td })).root.cert;
const now = Date.now();
const gatewayId = pki.gateway.id;
const bundle = (o: Partial<X509Bundle> = {}): X509Bundle => ({
  trustDomain: td,
  roots: [root],
  sequence: 3,
  ...o,
});
/** What the gateway publishes: signed with the key of the certificate it serves. */
const signed = (o: Partial<X509Bundle> = {}): Uint8Array =>
  encode(bundleMessage(bundle(o), pki.gateway.svid));
const current = { trustDomain: td, roots: [root], sequence: undefined, gatewayId, now };

test('the retained copy of the bundle in use is accepted but not new', () => {
  const r = acceptBundle(signed(), current);
  assert.is(r.changed, false);
  assert.is(r.sequence, 3);
});

test('new roots are new; the same set in another order is not', () => {
  const r = acceptBundle(signed({ roots: [root, other] }), current);
  assert.is(r.changed, true);
  assert.equal(
    r.roots.map((c) => c.fingerprint256),
    [root.fingerprint256, other.fingerprint256],
  );
  const again = acceptBundle(signed({ roots: [other, root], sequence: 4 }), { ...current, roots: r.roots });
  assert.is(again.changed, false);
});

test('malformed, foreign, rolled back or non-CA bundles: ERR_DEVICE_BUNDLE_INVALID', async () => {
  const msg = (o: Record<string, unknown>): Uint8Array =>
    encode({ ...bundleMessage(bundle(), pki.gateway.svid), ...o });
  const bad: [string, Uint8Array, number | undefined][] = [
    ['garbage', new Uint8Array([0xff, 0x00, 0x13]), undefined],
    ['not a map', encode(42), undefined],
    ['other trust domain', msg({ trustDomain: 'evil.example' }), undefined],
    ['negative sequence', msg({ sequence: -1 }), undefined],
    ['fractional sequence', msg({ sequence: 1.5 }), undefined],
    ['older than the one in use', signed({ sequence: 2 }), 3],
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
  assert.is(acceptBundle(signed(), { ...current, sequence: 3 }).changed, false);
});

test('issue 15 item 1: a forged bundle (its own CA, the highest sequence) is refused and blocks nothing', async () => {
  // The attacker's own root, and a "gateway" certificate with the real gateway's ID under it.
  const evilRoot = await makeCert({
    subject: 'CN=evil root',
    uris: [`spiffe://${td}`],
    ca: true,
    notBefore: now - 3600_000,
    notAfter: now + 3600_000,
  });
  const evilGw = await makeCert({
    subject: 'CN=gw-1',
    uris: [gatewayId],
    notBefore: now - 3600_000,
    notAfter: now + 3600_000,
    issuer: evilRoot,
  });
  const highest = Number.MAX_SAFE_INTEGER;
  const forged = encode(
    bundleMessage(bundle({ roots: [root, evilRoot.cert], sequence: highest }), {
      privateKey: evilGw.key,
      chain: [evilGw.cert, evilRoot.cert],
    }),
  );
  const err = await rejects<Error>(() => acceptBundle(forged, current), 'ERR_DEVICE_BUNDLE_UNAUTHENTICATED');
  assert.match(err.message, /does not verify against the trusted roots/);
  // A forgery refused: the device keeps its sequence (undefined), so the real next bundle is adopted.
  const real = acceptBundle(signed({ roots: [root, other], sequence: 4 }), current);
  assert.is(real.changed, true);
  assert.is(real.sequence, 4);
});

test('unsigned, re-signed, or signed by another identity of the trust domain: ERR_DEVICE_BUNDLE_UNAUTHENTICATED', async () => {
  const genuine = bundleMessage(bundle({ roots: [root, other], sequence: 9 }), pki.gateway.svid);
  const { signer: _s, signature: _g, ...unsigned } = genuine;
  // A device of the same gateway: a valid SVID of the trust domain, but not the gateway.
  const dev = await pki.device('mallory');
  // Another gateway's SVID (chains to the same root, wrong ID).
  const gw2 = await makeCert({
    subject: 'CN=gw-2',
    uris: [`spiffe://${td}/gateway/gw-2`],
    notBefore: now - 3600_000,
    notAfter: now + 3600_000,
    issuer: pki.root,
  });
  const expiredGw = await pki.gatewaySvid({ notBefore: now - 7200_000, notAfter: now - 60_000 });
  const cases: [string, Uint8Array][] = [
    ['unsigned', encode(unsigned)],
    ['signature of another message', encode({ ...genuine, sequence: 10 })],
    ['roots swapped after signing', encode({ ...genuine, roots: [new Uint8Array(other.raw)] })],
    ['signature is garbage', encode({ ...genuine, signature: new Uint8Array([1, 2, 3]) })],
    ['signer is not DER', encode({ ...genuine, signer: ['x'] })],
    ['signed by a device', encode(bundleMessage(bundle({ sequence: 9 }), dev.svid))],
    [
      'signed by another gateway',
      encode(bundleMessage(bundle({ sequence: 9 }), { privateKey: gw2.key, chain: [gw2.cert] })),
    ],
    ['signer expired', encode(bundleMessage(bundle({ sequence: 9 }), expiredGw.svid))],
  ];
  for (const [name, payload] of cases) {
    const err = await rejects<Error>(
      () => acceptBundle(payload, current),
      'ERR_DEVICE_BUNDLE_UNAUTHENTICATED',
    );
    assert.ok(err.message.length > 0, name);
  }
});

test.run();
