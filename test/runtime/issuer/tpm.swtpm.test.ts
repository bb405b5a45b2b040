/**
 * tpm attestation end to end: the TPM attestor on a real swtpm (RSA L-1 and ECC H-3 EKs with
 * certificates from swtpm_setup's local CA) against the issuer's verifier side: credential
 * activation, bound quotes, PCR reference values from signed manifests, renewal with a fresh
 * quote on the same AK, PCR drift, replay, wrong secret, wrong bank.
 */
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AttestProof } from '../../../attestors/attestor.ts';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { execute } from '../../../attestors/tpm/client/execute.ts';
import { PCR_Extend } from '../../../attestors/tpm/commands/pcr.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import { TPM_ALG } from '../../../attestors/tpm/wire/constants.ts';
import { signManifest } from '../../../runtime/firmware/manifest.ts';
import { Issuer } from '../../../runtime/issuer/issuer.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { parseCsr } from '../../../runtime/svid/csr.ts';
import type { AttestBeginResponse, IssuedIdentity } from '../../../runtime/upstream/protocol.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { rejects } from '../../helpers/rejects.ts';
import { keyAndCsr, TD } from './harness.ts';

const swtpm = await launchSwtpm();
const transport = await openTransport(swtpm.spec);
const random = seededRandom('issuer-tpm');
const clock = new VirtualClock(Date.now());
const SEL = 'sha256:0,1,2,7';
const caKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const fwKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const ctx = { address: '192.0.2.1' };

async function makeIssuer(): Promise<Issuer> {
  return Issuer.create({
    trustDomain: TD,
    store: await openMemoryStore(),
    ca: {
      certificate: createRootCa({
        trustDomain: TD,
        privateKey: caKey,
        notBefore: clock.now() - 1000,
        notAfter: clock.now() + 86_400_000 * 30,
        random,
      }),
      privateKey: caKey,
    },
    clock,
    random,
    methods: {
      tpm: {
        manufacturerRoots: [swtpm.root],
        intermediates: [swtpm.intermediate],
        pcrSelection: SEL,
        autoRegister: true,
        pcrPolicy: 'manifests',
      },
    },
    firmwareKeys: [fwKey],
  });
}

async function attest(issuer: Issuer, a: TpmAttestor, mutate?: (p: AttestProof & { method: 'tpm' }) => void) {
  const begin = await issuer.attestBegin(await a.begin(), ctx);
  const k = keyAndCsr();
  const proof = (await a.answer(begin, parseCsr(k.csr).spki)) as AttestProof & { method: 'tpm' };
  mutate?.(proof);
  const body = { ...proof, sessionId: begin.sessionId, csr: k.csr, caCsr: keyAndCsr().csr };
  return { begin, proof, body, key: k };
}

test.after(async () => {
  await swtpm.stop(transport);
  await transport.close();
});

for (const ek of ['L-1', 'H-3'] as const) {
  test(`${ek} EK: PCRs outside the manifests are refused; with a signed manifest the gateway is issued and renews`, async () => {
    const issuer = await makeIssuer();
    const a = new TpmAttestor({ transport, random, ekPreference: [ek], ownsTransport: false });
    await a.start();
    const first = await attest(issuer, a);
    assert.is((first.begin as AttestBeginResponse).pcrSelection, SEL);
    await rejects(() => issuer.attestFinish(first.body, ctx), 'ERR_ISSUER_PCR_MISMATCH');
    // The operator publishes the reference values of this firmware, signed.
    const pcrs: Record<number, string> = {};
    [0, 1, 2, 7].forEach((p, i) => {
      pcrs[p] = Buffer.from(first.proof.pcrValues[i] as Uint8Array).toString('hex');
    });
    await issuer.addManifest(
      { manifest: signManifest({ version: 'fw-1.0', bank: 'sha256', pcrs }, fwKey, clock.now()) },
      ctx,
    );
    const ok = await attest(issuer, a);
    const id = (await issuer.attestFinish(ok.body, ctx)) as IssuedIdentity;
    assert.match(id.spiffeId, new RegExp(`^spiffe://${TD}/gateway/tpm-[0-9a-f]{16}$`));
    // The same finish again (its answer lost): the same identity; another CSR on it: a replay.
    const again = (await issuer.attestFinish(ok.body, ctx)) as IssuedIdentity;
    assert.equal(Buffer.from(again.svidChain[0] as Uint8Array), Buffer.from(id.svidChain[0] as Uint8Array));
    await rejects(
      () => issuer.attestFinish({ ...(ok.body as object), csr: keyAndCsr().csr }, ctx),
      'ERR_ISSUER_SESSION_UNKNOWN',
    );

    // Renewal: mTLS identity + a fresh quote on the same AK, bound to the new CSR key.
    const peer = { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array };
    const rb = await issuer.renewBegin(peer);
    const k2 = keyAndCsr();
    const ev = await a.quote(rb.nonce, parseCsr(k2.csr).spki, rb.pcrSelection ?? SEL);
    const renewed = await issuer.renewFinish(
      { sessionId: rb.sessionId, csr: k2.csr, caCsr: keyAndCsr().csr, ...ev },
      peer,
    );
    assert.is(renewed.spiffeId, id.spiffeId);
    // A quote bound to another key (not the CSR's) is refused.
    const rb2 = await issuer.renewBegin(peer);
    const ev2 = await a.quote(rb2.nonce, parseCsr(keyAndCsr().csr).spki, SEL);
    await rejects(
      () =>
        issuer.renewFinish({ sessionId: rb2.sessionId, csr: k2.csr, caCsr: keyAndCsr().csr, ...ev2 }, peer),
      'ERR_ATTEST_QUOTE_INVALID',
    );
    // A quote of another selection than the one asked for is refused (swtpm keeps its sha1 bank
    // inactive, so the other-bank case is the verifier's unit test; here: other PCRs).
    const rb3 = await issuer.renewBegin(peer);
    const ev3 = await a.quote(rb3.nonce, parseCsr(k2.csr).spki, 'sha256:0,1,2');
    await rejects(
      () =>
        issuer.renewFinish({ sessionId: rb3.sessionId, csr: k2.csr, caCsr: keyAndCsr().csr, ...ev3 }, peer),
      'ERR_ATTEST_QUOTE_INVALID',
    );
    // Without a quote a tpm gateway cannot renew.
    const rb4 = await issuer.renewBegin(peer);
    await rejects(
      () => issuer.renewFinish({ sessionId: rb4.sessionId, csr: k2.csr, caCsr: keyAndCsr().csr }, peer),
      'ERR_ISSUER_QUOTE_INVALID',
    );
    await a.close();
    await issuer.close();
  });
}

test('a wrong activated secret is refused; PCR drift refuses renewal and the audit log says why', async () => {
  const issuer = await makeIssuer();
  const a = new TpmAttestor({ transport, random, ekPreference: ['H-3'], ownsTransport: false });
  await a.start();
  const bad = await attest(issuer, a, (p) => {
    p.activatedSecret = Buffer.alloc(p.activatedSecret.length, 1);
  });
  await rejects(() => issuer.attestFinish(bad.body, ctx), 'ERR_ISSUER_CREDENTIAL');
  const probe = await attest(issuer, a);
  const pcrs: Record<number, string> = {};
  [0, 1, 2, 7].forEach((p, i) => {
    pcrs[p] = Buffer.from(probe.proof.pcrValues[i] as Uint8Array).toString('hex');
  });
  await issuer.addManifest(
    { manifest: signManifest({ version: 'fw-2.0', bank: 'sha256', pcrs }, fwKey, clock.now()) },
    ctx,
  );
  const ok = await attest(issuer, a);
  const id = await issuer.attestFinish(ok.body, ctx);
  await execute(transport, PCR_Extend, {
    pcrHandle: 7,
    digests: [{ hash: TPM_ALG.SHA256, digest: Buffer.alloc(32, 9) }],
  });
  const peer = { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array };
  const rb = await issuer.renewBegin(peer);
  const k = keyAndCsr();
  const ev = await a.quote(rb.nonce, parseCsr(k.csr).spki, SEL);
  await rejects(
    () => issuer.renewFinish({ sessionId: rb.sessionId, csr: k.csr, caCsr: keyAndCsr().csr, ...ev }, peer),
    'ERR_ISSUER_PCR_MISMATCH',
  );
  const events = await issuer.auditEvents();
  assert.ok(events.some((e) => e.event === 'refuse' && e.code === 'ERR_ISSUER_CREDENTIAL'));
  assert.ok(
    events.some(
      (e) => e.event === 'refuse' && e.code === 'ERR_ISSUER_PCR_MISMATCH' && e.detail === 'renew.finish',
    ),
  );
  assert.ok(events.some((e) => e.event === 'issue' && e.method === 'tpm' && e.detail === 'firmware fw-2.0'));
  await a.close();
  await issuer.close();
});

test.run();
