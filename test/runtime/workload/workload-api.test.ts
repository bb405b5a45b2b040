/**
 * The SPIFFE Workload API end to end, with the Python gRPC stack as the independent client run as
 * real processes (under other uids by setpriv): entitlement by kernel credentials, the documented
 * status codes, rotation and reload on open streams, the executable-hash selector.
 */
import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { appendFileSync, copyFileSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { verifyX509Svid } from '../../../runtime/spiffe/verify.ts';
import { softwareCaKey } from '../../../runtime/svid/ca-key.ts';
import { createCaSigner } from '../../../runtime/svid/signer.ts';
import { seededRandom } from '../../../sim/random.ts';
import { buildPki } from '../../helpers/pki.ts';
import { rejects } from '../../helpers/rejects.ts';
import { harness, PYTHON, splitDer } from './harness.ts';

const UID_A = 41001;
const UID_B = 41002;
const HOUR = 3_600_000;

test('a workload under its own uid gets its entry; another uid is denied; the socket is 0777', async () => {
  const h = await harness([
    { name: 'adapter-a', selectors: [`unix:uid:${UID_A}`], hint: 'internal' },
    { name: 'root-svc', selectors: ['unix:uid:0'] },
  ]);
  try {
    assert.is(statSync(h.socket).mode & 0o777, 0o777);
    assert.is(statSync(join(h.dir, 'run')).mode & 0o777, 0o755);
    const a = await h.client(['x509', '--max', '1'], { uid: UID_A }).next();
    assert.equal(
      a.svids?.map((s) => s.id),
      [`${h.pki.gateway.id}/workload/adapter-a`],
    );
    assert.is(a.svids?.[0]?.hint, 'internal');
    assert.ok((a.svids?.[0]?.keyLen ?? 0) > 0);
    assert.is(a.svids?.[0]?.bundleLen, h.pki.root.cert.raw.length);
    const b = await h.client(['x509', '--max', '1'], { uid: UID_B }).next();
    assert.is(b.error, 'PERMISSION_DENIED');
    const bundles = await h.client(['bundles'], { uid: UID_A }).next();
    assert.equal(bundles.bundles, { [`spiffe://${h.pki.trustDomain}`]: h.pki.root.cert.raw.length });
  } finally {
    await h.close();
  }
});

test('the SVID chain verifies to the bundle through the delegated CA, under /workload/; its key matches', async () => {
  const h = await harness([{ name: 'svc', selectors: ['unix:uid:0'] }]);
  try {
    const got = (await h.client(['x509', '--max', '1', '--der']).next()).svids?.[0];
    assert.ok(got?.chain !== undefined && got.key !== undefined && got.bundle !== undefined);
    const chain = splitDer(Buffer.from(got.chain, 'base64'));
    assert.is(chain.length, 2);
    const roots = splitDer(Buffer.from(got.bundle, 'base64'));
    const v = verifyX509Svid(chain, {
      now: h.clock.now(),
      bundle: { trustDomain: h.pki.trustDomain, roots, sequence: 1 },
    });
    assert.is(v.spiffeId, `${h.pki.gateway.id}/workload/svc`);
    assert.is(v.signerId, h.pki.gateway.id);
    const key = createPrivateKey({ key: Buffer.from(got.key, 'base64'), format: 'der', type: 'pkcs8' });
    assert.ok((chain[0] as X509Certificate).checkPrivateKey(key));
  } finally {
    await h.close();
  }
});

test('path scoping: a delegated CA vouches for <gw>/workload/<one segment> only', async () => {
  const now = Date.now();
  const pki = await buildPki({ now });
  const signer = createCaSigner({
    certificate: pki.deviceCa.cert.raw,
    key: softwareCaKey(pki.deviceCa.key),
    trustDomain: pki.trustDomain,
    random: seededRandom('scope'),
  });
  const spki = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
    type: 'spki',
    format: 'der',
  });
  const verify = async (spiffeId: string) => {
    const der = (
      await signer.issue({ profile: 'svid', spiffeId, spki, notBefore: now, notAfter: now + HOUR })
    ).der;
    return verifyX509Svid([new X509Certificate(der), pki.deviceCa.cert], { now, bundle: pki.bundle });
  };
  assert.is((await verify(`${pki.gateway.id}/workload/w1`)).spiffeId, `${pki.gateway.id}/workload/w1`);
  await rejects(() => verify(`${pki.gateway.id}/workload/w1/x`), 'ERR_SVID_PATH_SCOPE');
  await rejects(() => verify(`spiffe://${pki.trustDomain}/gateway/gw-2/workload/w1`), 'ERR_SVID_PATH_SCOPE');
  await rejects(() => verify(`${pki.gateway.id}/workloads/w1`), 'ERR_SVID_PATH_SCOPE');
});

test('bad input gets the documented code: no metadata → INVALID_ARGUMENT, on every call', async () => {
  const h = await harness([{ name: 'svc', selectors: ['unix:uid:0'] }]);
  try {
    assert.is((await h.client(['x509', '--no-metadata']).next()).error, 'INVALID_ARGUMENT');
    assert.is((await h.client(['bundles', '--no-metadata']).next()).error, 'INVALID_ARGUMENT');
    assert.is((await h.client(['jwt', '--aud', 'a', '--no-metadata']).next()).error, 'INVALID_ARGUMENT');
    assert.is((await h.client(['jwtbundles', '--no-metadata']).next()).error, 'INVALID_ARGUMENT');
    assert.is(
      (await h.client(['validate', '--aud', 'a', '--token', 'x', '--no-metadata']).next()).error,
      'INVALID_ARGUMENT',
    );
  } finally {
    await h.close();
  }
});

test('an open stream and a new connection see the rotation at half-life (virtual clock) and a delegated CA change', async () => {
  const h = await harness([{ name: 'svc', selectors: ['unix:uid:0'] }], { ttlMs: HOUR });
  try {
    const c = h.client(['x509']);
    const first = await c.next();
    assert.is(first.svids?.length, 1);
    await h.clock.advance(HOUR / 2 + 1000);
    const second = await c.next();
    assert.is(second.svids?.[0]?.id, first.svids?.[0]?.id);
    assert.is.not(second.svids?.[0]?.sha, first.svids?.[0]?.sha);
    // A new connection gets the rotated SVID too, not the response built for the first one.
    assert.is((await h.client(['x509']).next()).svids?.[0]?.sha, second.svids?.[0]?.sha);
    // The agent adopts another delegated CA (renewal): a fresh SVID under it, on the same stream.
    h.setLive({ ...h.live() });
    const third = await c.next();
    assert.is.not(third.svids?.[0]?.sha, second.svids?.[0]?.sha);
    assert.is((await h.client(['x509']).next()).svids?.[0]?.sha, third.svids?.[0]?.sha);
  } finally {
    await h.close();
  }
});

test('an entry removed by a reload ends the stream with PERMISSION_DENIED; others keep theirs', async () => {
  const h = await harness([
    { name: 'a', selectors: [`unix:uid:${UID_A}`] },
    { name: 'b', selectors: [`unix:uid:${UID_B}`] },
  ]);
  try {
    const a = h.client(['x509'], { uid: UID_A });
    const b = h.client(['x509'], { uid: UID_B });
    assert.is((await a.next()).svids?.[0]?.id, `${h.pki.gateway.id}/workload/a`);
    const bFirst = await b.next();
    await h.server.setEntries([{ name: 'b', selectors: [`unix:uid:${UID_B}`] }]);
    const ended = await a.next();
    assert.is(ended.error, 'PERMISSION_DENIED');
    assert.is(h.server.streamCount, 1);
    // b's stream is still open: a rotation reaches it (sentinel that it was not ended).
    await h.clock.advance(HOUR);
    const bNext = await b.next();
    assert.is(bNext.svids?.[0]?.id, bFirst.svids?.[0]?.id);
  } finally {
    await h.close();
  }
});

test('the executable-hash selector refuses a copy of the binary with another hash', async () => {
  const exe = realpathSync(PYTHON);
  const sha = createHash('sha256').update(readFileSync(exe)).digest('hex');
  const h = await harness([{ name: 'py', selectors: [`unix:sha256:${sha}`, 'unix:uid:0'] }]);
  try {
    const copy = join(h.dir, 'python3-copy');
    copyFileSync(exe, copy);
    appendFileSync(copy, Buffer.from([0])); // still runs; another hash
    const ok = await h.client(['x509', '--max', '1']).next();
    assert.equal(
      ok.svids?.map((s) => s.id),
      [`${h.pki.gateway.id}/workload/py`],
    );
    const denied = await h.client(['x509', '--max', '1'], { python: copy }).next();
    assert.is(denied.error, 'PERMISSION_DENIED');
  } finally {
    await h.close();
  }
});

test.run();
