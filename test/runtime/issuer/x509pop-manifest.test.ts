import { createHash, createPublicKey, generateKeyPairSync, sign, X509Certificate } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { signManifest } from '../../../runtime/firmware/manifest.ts';
import { Issuer, type IssuerOptions } from '../../../runtime/issuer/issuer.ts';
import { matchReference } from '../../../runtime/issuer/manifests.ts';
import type { ManifestRecord } from '../../../runtime/issuer/records.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { createRootCa, createServerCertificate } from '../../../runtime/svid/authority.ts';
import { parseCsr } from '../../../runtime/svid/csr.ts';
import { x509popSignedData } from '../../../runtime/svid/pop.ts';
import type { AttestBeginResponse } from '../../../runtime/upstream/protocol.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { rejects } from '../../helpers/rejects.ts';
import { keyAndCsr, TD } from './harness.ts';

const clock = new VirtualClock(Date.UTC(2026, 0, 1));
const random = seededRandom('x509pop');
const now = clock.now();
const DAY = 86_400_000;
const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

const caKey = ec();
const ca = {
  certificate: createRootCa({
    trustDomain: TD,
    privateKey: caKey,
    notBefore: now - DAY,
    notAfter: now + 365 * DAY,
    random,
  }),
  privateKey: caKey,
};
const factoryKey = ec();
const factoryRoot = createRootCa({
  trustDomain: 'factory',
  privateKey: factoryKey,
  notBefore: now - DAY,
  notAfter: now + 365 * DAY,
  random,
});
const deviceKey = ec();
const leafFor = (cn: string, key = deviceKey, notAfter = now + 30 * DAY) =>
  createServerCertificate({
    issuerCertificate: factoryRoot,
    issuerKey: factoryKey,
    subjectKey: key,
    hosts: [cn],
    notBefore: now - DAY,
    notAfter,
    random,
  });
const fwKey = ec();

async function make(extra: Partial<IssuerOptions['methods']> = {}, autoRegister = true): Promise<Issuer> {
  return Issuer.create({
    trustDomain: TD,
    store: await openMemoryStore(),
    ca,
    clock,
    random,
    methods: {
      x509pop: { roots: [new X509Certificate(factoryRoot)], nameFrom: 'cn', autoRegister },
      ...extra,
    },
    firmwareKeys: [createPublicKey(fwKey)],
  });
}
const ctx = { address: '10.0.0.9' };

async function attest(issuer: Issuer, chain: Uint8Array[], key = deviceKey, tamper = false) {
  const b = (await issuer.attestBegin({ method: 'x509pop', chain }, ctx)) as AttestBeginResponse;
  const k = keyAndCsr();
  const sig = sign('sha256', x509popSignedData(b.nonce, parseCsr(k.csr).spki), { key, dsaEncoding: 'der' });
  if (tamper) sig[sig.length - 1] = (sig[sig.length - 1] as number) ^ 1;
  return issuer.attestFinish(
    { method: 'x509pop', sessionId: b.sessionId, csr: k.csr, caCsr: keyAndCsr().csr, signature: sig },
    ctx,
  );
}

test('x509pop: factory chain + proof of possession gives the gateway named after the CN', async () => {
  const issuer = await make();
  const id = await attest(issuer, [leafFor('fac-001')]);
  assert.is(id.spiffeId, `spiffe://${TD}/gateway/fac-001`);
  await issuer.close();
});

test('x509pop refusals: wrong possession key, foreign chain, CA as leaf, expired, unregistered', async () => {
  const issuer = await make();
  await rejects(() => attest(issuer, [leafFor('fac-002')], ec()), 'ERR_ISSUER_POP_INVALID');
  await rejects(() => attest(issuer, [leafFor('fac-002')], deviceKey, true), 'ERR_ISSUER_POP_INVALID');
  const otherKey = ec();
  const otherRoot = createRootCa({
    trustDomain: 'x',
    privateKey: otherKey,
    notBefore: now - DAY,
    notAfter: now + DAY,
    random,
  });
  const foreign = createServerCertificate({
    issuerCertificate: otherRoot,
    issuerKey: otherKey,
    subjectKey: deviceKey,
    hosts: ['fac-003'],
    notBefore: now - DAY,
    notAfter: now + DAY,
    random,
  });
  await rejects(
    () => issuer.attestBegin({ method: 'x509pop', chain: [foreign] }, ctx),
    'ERR_ISSUER_CHAIN_INVALID',
  );
  await rejects(
    () => issuer.attestBegin({ method: 'x509pop', chain: [factoryRoot] }, ctx),
    'ERR_ISSUER_CHAIN_INVALID',
  );
  await rejects(
    () => issuer.attestBegin({ method: 'x509pop', chain: [leafFor('fac-004', deviceKey, now - 1000)] }, ctx),
    'ERR_ISSUER_CHAIN_INVALID',
  );
  await rejects(
    () => issuer.attestBegin({ method: 'x509pop', chain: [new Uint8Array([0x30, 0])] }, ctx),
    'ERR_ISSUER_CHAIN_INVALID',
  );
  const strict = await make({}, false);
  await rejects(
    () => strict.attestBegin({ method: 'x509pop', chain: [leafFor('fac-005')] }, ctx),
    'ERR_ISSUER_NOT_REGISTERED',
  );
  await strict.register('x509', 'fac-005', 'line-7');
  assert.is((await attest(strict, [leafFor('fac-005')])).spiffeId, `spiffe://${TD}/gateway/line-7`);
  const events = await issuer.auditEvents();
  assert.ok(events.filter((e) => e.event === 'refuse' && e.code === 'ERR_ISSUER_POP_INVALID').length === 2);
  await issuer.close();
  await strict.close();
});

test('manifests: signed by the firmware key are accepted and matched; unsigned or wrongly signed are refused', async () => {
  const issuer = await make();
  const pcr = (n: number) => createHash('sha256').update(`pcr${n}`).digest();
  const hex = (n: number) => pcr(n).toString('hex');
  const good = signManifest({ version: '1.2.0', bank: 'sha256', pcrs: { 0: hex(0), 7: hex(7) } }, fwKey, now);
  assert.equal(await issuer.addManifest({ manifest: good }, ctx), { version: '1.2.0' });
  const wrongKey = signManifest({ version: '6.6.6', bank: 'sha256', pcrs: { 0: hex(0) } }, ec(), now);
  await rejects(() => issuer.addManifest({ manifest: wrongKey }, ctx), 'ERR_MANIFEST_UNKNOWN_KEY');
  const env = JSON.parse(good) as Record<string, string>;
  await rejects(
    () => issuer.addManifest({ manifest: JSON.stringify({ ...env, signature: '' }) }, ctx),
    'ERR_MANIFEST_SIGNATURE',
  );
  await rejects(() => issuer.addManifest({ manifest: 42 }, ctx), 'ERR_ISSUER_MANIFEST_INVALID');
  await rejects(() => issuer.addManifest({ manifest: '{"format":"other"}' }, ctx), 'ERR_MANIFEST_INVALID');
  const recs: ManifestRecord[] = [
    { version: '1.2.0', bank: 'sha256', pcrs: { '0': pcr(0), '7': pcr(7) }, addedAt: now },
  ];
  assert.is(matchReference(recs, 'sha256:0,7', [pcr(0), pcr(7)]), '1.2.0');
  assert.is(matchReference(recs, 'sha256:0,7', [pcr(0), pcr(8)]), undefined, 'drifted PCR');
  assert.is(matchReference(recs, 'sha256:0,1,7', [pcr(0), pcr(1), pcr(7)]), undefined, 'PCR not covered');
  assert.is(matchReference(recs, 'sha1:0,7', [pcr(0), pcr(7)]), undefined, 'other bank');
  await issuer.close();
});

test.run();
