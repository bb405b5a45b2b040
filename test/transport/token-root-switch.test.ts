/**
 * Device join tokens across the issuer's CA switch, with real clients (the README's curl +
 * openssl recipe read from README.md, and the SDK's EST client) against the enrollment listener
 * as the gateway's bundle goes through a rotation: the next root published (bundle [old, new]),
 * the switch (bundle [new, old], the gateway still serving under the old root), the gateway's
 * CA renewed under the new root, the old root retired (bundle [new]); the Python client
 * (est_client.py) enrolls and re-enrolls mid-rotation too. A token made at any of those points names every root of the bundle then, so it
 * enrolls at every later point within its lifetime; a token of the old one-fingerprint form still
 * parses and enrolls while its root is served.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync, type X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { seededRandom } from '../../sim/random.ts';
import { enroll } from '../../transport/enroll/est-client.ts';
import { issueJoinToken, parseJoinToken, sha256 } from '../../transport/enroll/join-token.ts';
import { buildPki } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';
import { readmeBlock, sh } from './readme-block.ts';
import { rig } from './setup.ts';

const run = promisify(execFile);
const r = await rig({ limits: { enrollPerMinute: 1000 } });
const at = r.broker.addresses.enrollment as { host: string; port: number };
const GW = `127.0.0.1:${at.port}`;
// Its own subject name: this test PKI has no key identifiers, and OpenSSL (curl) cannot tell two
// same-named roots apart without them (edgeward's own certificates carry them: ca-openssl.test.ts).
const next = await buildPki({ now: r.clock.now(), rootName: 'fleet.example root #2' });
const td = r.pki.trustDomain;
const oldRoot = r.pki.root.cert;
const newRoot = next.root.cert;
const key = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const random = seededRandom('token-root-switch');
let seq = 1;
let made = 0;

const setRoots = (roots: X509Certificate[]) => r.bundles.set({ trustDomain: td, roots, sequence: ++seq });

async function token(deviceId: string): Promise<string> {
  const bundle = r.bundles.getBundleFor(td);
  return (
    await issueJoinToken({ store: r.tokens, random, clock: r.clock, bundle, deviceId, ttlMs: 3_600_000 })
  ).token;
}

/** Enroll `deviceId` with the README recipe in a fresh directory; the roots it kept in ca.pem. */
async function recipe(
  deviceId: string,
  tok: string,
): Promise<{ code: number | null; stderr: string; roots: number }> {
  const dir = join(r.tmp, `${deviceId}-${made++}`);
  mkdirSync(dir);
  const out = await sh(readmeBlock('enroll'), dir, { GW, DEVICE: deviceId, TOKEN: tok });
  const roots =
    out.code === 0 ? (readFileSync(join(dir, 'ca.pem'), 'utf8').match(/BEGIN CERT/g) ?? []).length : 0;
  return { ...out, roots };
}

/** The Python standard-library client (est_client.py): enroll, then re-enroll with the certificate. */
async function python(deviceId: string, tok: string): Promise<string> {
  const dir = join(r.tmp, `${deviceId}-${made++}`);
  mkdirSync(dir);
  for (const [k, csr] of [
    ['key.pem', 'csr.der'],
    ['key2.pem', 'csr2.der'],
  ])
    await run('openssl', [
      ...['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'],
      ...[
        '-keyout',
        join(dir, k as string),
        '-subj',
        `/CN=${deviceId}`,
        '-outform',
        'DER',
        '-out',
        join(dir, csr as string),
      ],
    ]);
  const script = new URL('./est_client.py', import.meta.url).pathname;
  return (await run('python3', [script, GW, deviceId, tok, dir])).stdout;
}

const sdk = (deviceId: string, tok: string) =>
  enroll({ host: '127.0.0.1', port: at.port, deviceId, token: tok, key: key(), now: () => r.clock.now() });

test('tokens made before, at and after a CA switch enroll through the overlap and after the old root retires (recipe and SDK)', async () => {
  assert.is.not(oldRoot.fingerprint256, newRoot.fingerprint256);
  // Before the rotation: a one-root bundle. A token of the old form names just that root.
  const legacy = await token('dev-legacy');
  assert.is(parseJoinToken(legacy).fingerprints.length, 1);
  const legacyOld = await token('dev-legacy-2');

  // The next root is published: the bundle lists the signing (old) root first.
  setRoots([oldRoot, newRoot]);
  const published = await token('dev-a');
  const pins = parseJoinToken(published).fingerprints;
  assert.equal(
    pins.map((p) => p.toString('hex')),
    [sha256(newRoot.raw).toString('hex'), sha256(oldRoot.raw).toString('hex')],
    'every root, the signing one last',
  );
  assert.is(published.split('.').at(-1), sha256(oldRoot.raw).toString('base64url'));
  const publishedSdk = await token('dev-a-sdk');
  const publishedLate = await token('dev-a-late');
  const publishedPy = await token('dev-a-py');

  // The switch: the new root signs and is listed first; the gateway still serves under the old.
  setRoots([newRoot, oldRoot]);
  const switched = await token('dev-b');
  const switchedLate = await token('dev-b-late');
  const a = await recipe('dev-a', published);
  assert.is(a.code, 0, a.stderr);
  assert.is(a.roots, 2, 'ca.pem keeps both roots');
  const b = await recipe('dev-b', switched);
  assert.is(b.code, 0, b.stderr);
  const l = await recipe('dev-legacy', legacy);
  assert.is(l.code, 0, `a one-fingerprint token of the old root, now listed second: ${l.stderr}`);
  await sdk('dev-a-sdk', publishedSdk);

  // The gateway's delegated CA is renewed under the new root.
  r.svids.set(next.gateway.svid);
  const renewed = await token('dev-c');
  for (const [id, tok] of [
    ['dev-a-late', publishedLate],
    ['dev-c', renewed],
  ] as const) {
    const out = await recipe(id, tok);
    assert.is(out.code, 0, `${id}: ${out.stderr}`);
  }

  const py = await python('dev-a-py', publishedPy);
  assert.match(py, /reenrolled .*\/device\/dev-a-py/, 'the Python client too');

  // The old root retires: a token made before or at the switch still names the new one.
  setRoots([newRoot]);
  const retiredOut = await recipe('dev-b-late', switchedLate);
  assert.is(retiredOut.code, 0, retiredOut.stderr);
  assert.is(retiredOut.roots, 1);
  // Only a token made before the next root existed cannot name it: the device refuses the gateway.
  const gone = await recipe('dev-legacy-2', legacyOld);
  assert.is.not(gone.code, 0);
  assert.match(gone.stderr, /cacerts: not the gateway of this token/);
  await rejects(() => sdk('dev-legacy-2', legacyOld), 'ERR_ENROLL_GATEWAY_UNTRUSTED');
});

test('a token with too many or malformed fingerprints is refused as ERR_ENROLL_TOKEN_INVALID', async () => {
  const fp = Buffer.alloc(32, 1).toString('base64url');
  const secret = Buffer.alloc(32, 2).toString('base64url');
  assert.is(parseJoinToken(['ewt1', secret, ...Array(8).fill(fp)].join('.')).fingerprints.length, 8);
  await rejects(
    async () => parseJoinToken(['ewt1', secret, ...Array(9).fill(fp)].join('.')),
    'ERR_ENROLL_TOKEN_INVALID',
  );
  await rejects(async () => parseJoinToken(`ewt1.${secret}.${fp}.abc`), 'ERR_ENROLL_TOKEN_INVALID');
  await rejects(async () => parseJoinToken(`ewt1.${secret}`), 'ERR_ENROLL_TOKEN_INVALID');
});

test.after(() => r.close());
test.run();
