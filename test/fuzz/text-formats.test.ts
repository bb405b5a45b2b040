/**
 * Fuzz: the text formats an operator or a vendor hands to edgeward — config files
 * (runtime/config/load.ts, YAML + schema + migrations + env overrides), broker policy files
 * (transport/policy/load.ts) and signed firmware manifests (runtime/firmware/manifest.ts).
 * Mutated as text (YAML anchors and aliases, tabs, deep nesting, huge numbers) and as documents;
 * every outcome must be a value, a `{ ok: false, issues }` report or a typed ERR_ code, and a
 * manifest whose signed bytes were altered is never accepted.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AGENT_ROLE, ISSUER_ROLE, loadConfigText } from '../../runtime/config/load.ts';
import { signManifest, verifyManifest } from '../../runtime/firmware/manifest.ts';
import { parsePolicy } from '../../transport/policy/load.ts';
import { corpus, expectTyped, fuzz, mutatedText } from './helpers/fuzz.ts';

const AGENT = `version: 1
trustDomain: fleet.example
dataDir: /var/lib/edgeward
tpm: device:/dev/tpmrm0
attestation:
  method: tpm
  pcrs: sha256:0,1,2,7
upstream:
  endpoints:
    - https://issuer.fleet.example:8443
broker:
  listen: { port: 8883 }
`;
const ISSUER = `version: 1
trustDomain: fleet.example
listen: { host: 0.0.0.0, port: 8443, certificate: /etc/edgeward/tls.pem, key: /etc/edgeward/tls.key }
ca: { certificate: /etc/edgeward/ca.pem, key: /etc/edgeward/ca.key }
storeDir: /var/lib/edgeward-issuer
svidTtl: 1h
attestation:
  tpm: { manifestKeys: [], manufacturerRoots: [/etc/edgeward/roots/infineon.pem] }
  joinToken: { enabled: true }
`;
const POLICY = readFileSync(new URL('../transport/fixtures/policy-valid.yaml', import.meta.url), 'utf8');

/** YAML fragments hostile to parsers: aliases (billion laughs), tags, deep flow nesting, big numbers. */
const yamlBombs = fc.constantFrom(
  'a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n',
  `${'['.repeat(500)}${']'.repeat(500)}\n`,
  'version: !!binary aGVsbG8=\n',
  'version: 1e400\n',
  '__proto__: { polluted: true }\nversion: 1\n',
  'version: 1\nversion: 2\n',
  '\tversion: 1\n',
  '--- !<tag:yaml.org,2002:js/function> "function(){}"\n',
  'version: 99\n',
  '',
);

const configTexts = fc.oneof(mutatedText(AGENT, ISSUER), yamlBombs);

test('valid seeds load', () => {
  assert.is(loadConfigText(AGENT, AGENT_ROLE).trustDomain, 'fleet.example');
  assert.ok(parsePolicy(POLICY).ok);
});

test('config files: mutated YAML loads or is ERR_CONFIG_*', async () => {
  await fuzz(
    'config',
    fc.property(configTexts, fc.constantFrom(AGENT_ROLE, ISSUER_ROLE), (text, role) => {
      const out = expectTyped(() =>
        loadConfigText(text, role as typeof AGENT_ROLE, { EDGEWARD_TRUST_DOMAIN: 'x.example' }),
      );
      if (out !== 'ok') assert.ok(out.startsWith('ERR_CONFIG_'), out);
      assert.is(({} as Record<string, unknown>).polluted, undefined, 'prototype polluted');
    }),
    300,
  );
});

test('policy files: mutated YAML is a policy or a list of issues, never a throw', async () => {
  await fuzz(
    'policy',
    fc.property(fc.oneof(mutatedText(POLICY), yamlBombs), (text) => {
      const out = expectTyped(() => {
        const r = parsePolicy(text);
        if (!r.ok) {
          assert.ok(r.issues.length > 0);
          for (const i of r.issues) assert.type(i.message, 'string');
        }
      });
      assert.is(out, 'ok');
    }),
    300,
  );
});

test('firmware manifests: mutated envelopes are refused with ERR_MANIFEST_*, altered payloads never verify', async () => {
  const vendor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const text = signManifest(
    { version: '2.3.1', bank: 'sha256', pcrs: { 0: 'ab'.repeat(32), 7: 'cd'.repeat(32) } },
    vendor.privateKey,
    Date.UTC(2026, 0, 1),
  );
  const good = verifyManifest(text, [vendor.publicKey]);
  const env = JSON.parse(text) as Record<string, string>;
  const payload = Buffer.from(env.payload as string, 'base64url').toString('utf8');
  const payloadEdits = mutatedText(payload).map((p) =>
    JSON.stringify({ ...env, payload: Buffer.from(p, 'utf8').toString('base64url') }),
  );
  const fieldEdits = fc
    .tuple(fc.constantFrom('format', 'keyId', 'payload', 'signature'), fc.jsonValue({ maxDepth: 2 }))
    .map(([k, v]) => JSON.stringify({ ...env, [k]: v }));
  await fuzz(
    'manifest',
    fc.property(fc.oneof(mutatedText(text), payloadEdits, fieldEdits), (t) => {
      const out = expectTyped(() => verifyManifest(t, [vendor.publicKey]));
      if (out === 'ok') {
        // Only edits outside the signed payload (whitespace, key order) may still verify, and
        // then the manifest read must be the signed one.
        assert.equal(verifyManifest(t, [vendor.publicKey]), good);
      } else assert.ok(out.startsWith('ERR_MANIFEST_'), out);
    }),
    300,
  );
});

test('corpus replays with its recorded outcomes', () => {
  for (const e of corpus('text-formats')) {
    const text = e.text ?? '';
    const out = e.name.startsWith('policy-')
      ? parsePolicy(text).ok
        ? 'ok'
        : 'ERR_POLICY_INVALID'
      : expectTyped(() => loadConfigText(text, AGENT_ROLE));
    assert.is(out, e.expect, `${e.name}: ${e.note}`);
  }
});

test.run();
