/**
 * Fuzz: everything X.509 that comes from outside — PKCS#10 CSRs (runtime/svid/csr.ts),
 * certificate DER (runtime/svid/certificate.ts), presented SVID chains (runtime/spiffe/verify.ts,
 * the transport's and the agent's verifier), SPIFFE IDs (runtime/spiffe/id.ts)
 * and SPIFFE bundle JSON (runtime/svid/bundle.ts). Valid seeds are mutated structurally; every
 * outcome must be success or a typed ERR_ code, and the valid seeds must still round-trip.
 */
import 'reflect-metadata';
import { createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseSpiffeId } from '../../runtime/spiffe/id.ts';
import { SvidVerifier } from '../../runtime/spiffe/verify.ts';
import { decodeBundle, encodeBundle } from '../../runtime/svid/bundle.ts';
import { parseCertificate } from '../../runtime/svid/certificate.ts';
import { createCsr, parseCsr } from '../../runtime/svid/csr.ts';

import { buildPki } from '../helpers/pki.ts';
import { corpus, entryBytes, expectTyped, fuzz, hostileBytes, mutated, mutatedText } from './helpers/fuzz.ts';

const NOW = Date.UTC(2026, 0, 1);
const pki = await buildPki({ now: NOW });
const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const rsaKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const csrSeeds = [createCsr(ecKey), createCsr(rsaKey, 'rsa-device')];
const device = await pki.device('sensor-1');
const certSeeds = [device.cert.raw, pki.deviceCa.cert.raw, pki.root.cert.raw, pki.gateway.cert.raw];
const bundleJson = encodeBundle({ roots: [pki.root.cert.raw], sequence: 7, refreshHintSeconds: 300 });

test('valid seeds round-trip', () => {
  for (const der of csrSeeds) {
    const parsed = parseCsr(der);
    assert.ok(parsed.spki.length > 0);
  }
  const parts = parseCertificate(device.cert.raw);
  assert.equal(parts.uris, [device.id]);
  assert.is(parts.notAfter, Date.parse(device.cert.validTo));
  const v = new SvidVerifier().verifyDer(
    device.chain.map((c) => c.raw),
    { now: NOW, bundle: pki.bundle, delegatedCa: pki.deviceCa.cert },
  );
  assert.is(v.spiffeId, device.id);
  const b = decodeBundle(bundleJson);
  assert.is(b.sequence, 7);
  assert.is(b.refreshHintSeconds, 300);
  assert.ok(b.roots[0]?.publicKey.equals(pki.root.cert.publicKey));
});

test('CSRs: mutated DER never crashes, every refusal is typed', async () => {
  await fuzz(
    'csr',
    fc.property(hostileBytes(...csrSeeds), (b) => {
      const out = expectTyped(() => parseCsr(b));
      if (out !== 'ok')
        assert.ok(['ERR_CSR_MALFORMED', 'ERR_CSR_SIGNATURE', 'ERR_CSR_WEAK_KEY'].includes(out), out);
    }),
    300,
  );
});

test('certificates: mutated DER parses or is ERR_DER_MALFORMED', async () => {
  await fuzz(
    'certificate',
    fc.property(hostileBytes(...certSeeds), (b) => {
      const out = expectTyped(() => parseCertificate(b));
      if (out !== 'ok') assert.is(out, 'ERR_DER_MALFORMED');
    }),
    400,
  );
});

test('SVID chains: a mutated leaf or CA is refused with ERR_SVID_* and never accepted altered', async () => {
  const verifier = new SvidVerifier();
  const leaf = device.cert.raw;
  const ca = pki.deviceCa.cert.raw;
  await fuzz(
    'svid-chain',
    fc.property(mutated(leaf), mutated(ca), fc.boolean(), (badLeaf, badCa, withCa) => {
      const chain = withCa ? [badLeaf, badCa] : [badLeaf];
      const out = expectTyped(() =>
        verifier.verifyDer(chain, {
          now: NOW,
          bundle: pki.bundle,
          delegatedCa: pki.deviceCa.cert,
          purpose: 'client',
        }),
      );
      if (out === 'ok') {
        // Only an edit that left the signed bytes intact may pass (e.g. a flip in the
        // signature's DER padding that OpenSSL tolerates is impossible: the TBS must be equal).
        assert.equal(parseCertificate(badLeaf).tbs, parseCertificate(leaf).tbs);
      } else assert.ok(out.startsWith('ERR_SVID_'), out);
    }),
    200,
  );
});

test('SPIFFE IDs: arbitrary and mutated strings are parsed or ERR_SPIFFE_ID_INVALID', async () => {
  const seeds = [device.id, 'spiffe://fleet.example/gateway/gw-1', 'spiffe://a.b'];
  await fuzz(
    'spiffe-id',
    fc.property(
      fc.oneof(mutatedText(...seeds), fc.webUrl(), fc.string({ unit: 'binary', maxLength: 80 })),
      (s) => {
        const a = expectTyped(() => parseSpiffeId(s));
        if (a !== 'ok') assert.is(a, 'ERR_SPIFFE_ID_INVALID');
      },
    ),
    500,
  );
});

test('SPIFFE bundles: mutated JSON text and mutated documents are typed ERR_BUNDLE_MALFORMED', async () => {
  const doc = JSON.parse(bundleJson) as { keys: Record<string, unknown>[] };
  const key = doc.keys[0] as Record<string, unknown>;
  const field = fc.constantFrom(
    'keys',
    'spiffe_sequence',
    'spiffe_refresh_hint',
    'use',
    'x5c',
    'kty',
    'crv',
    'x',
    'y',
  );
  const docs = fc.tuple(field, fc.jsonValue({ maxDepth: 3 })).map(([f, v]) => {
    const copy = structuredClone(doc) as unknown as Record<string, unknown>;
    if (f in copy) copy[f] = v;
    else ((copy.keys as Record<string, unknown>[])[0] as Record<string, unknown>)[f] = v;
    return JSON.stringify(copy);
  });
  const otherKey = createPublicKey(ecKey).export({ format: 'jwk' });
  const swapped = JSON.stringify({ ...doc, keys: [{ ...key, ...otherKey }] });
  await fuzz(
    'bundle',
    fc.property(fc.oneof(mutatedText(bundleJson, swapped), docs), (text) => {
      const out = expectTyped(() => decodeBundle(text));
      if (out !== 'ok') assert.is(out, 'ERR_BUNDLE_MALFORMED');
      else {
        // Anything accepted holds only real CA certificates whose JWK matched.
        for (const r of decodeBundle(text).roots) assert.ok(r instanceof X509Certificate && r.ca);
      }
    }),
    400,
  );
});

test('corpus replays with its recorded outcomes', () => {
  for (const e of corpus('x509')) {
    const b = entryBytes(e);
    const verify = () =>
      new SvidVerifier().verifyDer([b], { now: NOW, bundle: pki.bundle, delegatedCa: pki.deviceCa.cert });
    const out = e.name.startsWith('csr-')
      ? expectTyped(() => parseCsr(b))
      : e.name.startsWith('bundle-')
        ? expectTyped(() => decodeBundle(b.toString('utf8')))
        : e.name.startsWith('svid-')
          ? expectTyped(verify)
          : expectTyped(() => parseCertificate(b));
    const want = e.expect.endsWith('*') ? out.startsWith(e.expect.slice(0, -1)) : out === e.expect;
    assert.ok(want, `${e.name}: got ${out}, want ${e.expect}: ${e.note}`);
  }
});

test.run();
