/**
 * The delegated device CA renews at its own half-life ±10 %, not with every SVID: renewals send a
 * CA CSR only when the CA is due (virtual clock, FakeIssuer: SVID 1 h, CA 24 h), the current CA
 * and its key carry over otherwise and survive a restart; and the real issuer, sent no caCsr,
 * re-signs only the SVID (empty deviceCaChain) over HTTPS.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createCsr } from '../../../runtime/svid/csr.ts';
import type { AttestBeginResponse, IssuedIdentity } from '../../../runtime/upstream/protocol.ts';
import { harness as issuerHarness } from '../issuer/harness.ts';
import { HOUR, harness, MIN } from './helpers/harness.ts';

const DAY = 24 * HOUR;

test('SVID renewals keep the CA; the CA renews at 45–55 % of its life, again and again', async () => {
  const h = await harness();
  await h.clock.advance(0);
  const t0 = h.clock.now();
  assert.equal(h.issuer.caIssued, [t0], 'attestation obtains the first CA');
  const firstCa = h.agent.status().deviceCa;
  // 40 virtual hours in 1-minute steps.
  for (let i = 0; i < 40 * 60; i++) await h.clock.advance(MIN);
  const renewals = h.issuer.count('/v1/renew/finish');
  assert.ok(renewals >= 70 && renewals <= 95, `about one SVID renewal per 30 min: ${renewals}`);
  const cas = h.issuer.caIssued.map((t) => t - t0);
  assert.is(cas.length, 4, `CAs at ${cas.map((t) => (t / HOUR).toFixed(2)).join(', ')} h`);
  for (let i = 1; i < cas.length; i++) {
    const gap = (cas[i] as number) - (cas[i - 1] as number);
    assert.ok(
      gap >= 0.45 * DAY && gap <= 0.55 * DAY + MIN,
      `CA ${i} renewed ${(gap / HOUR).toFixed(2)} h after the last`,
    );
  }
  const rotated = h.logger.lines.filter((l) => l.fields.event === 'identity.rotated');
  assert.is(rotated.filter((l) => l.fields.caRenewed === true).length, 4);
  assert.is(rotated.filter((l) => l.fields.caRenewed === false).length, rotated.length - 4);
  assert.ok(h.agent.status().deviceCa?.notAfter !== firstCa?.notAfter);
  await h.agent.stop();
});

test('between CA renewals the CA and its key carry over, also across a restart', async () => {
  const h = await harness();
  await h.clock.advance(0);
  const ca = () => h.agent.svidSource.current()?.ca;
  const first = ca();
  const svid1 = h.agent.svidSource.getX509Svid();
  await h.clock.advance(2 * HOUR);
  assert.ok(h.issuer.count('/v1/renew/finish') >= 3);
  assert.is.not(h.agent.svidSource.getX509Svid(), svid1, 'the SVID rotated');
  assert.is(ca()?.chain[0]?.serialNumber, first?.chain[0]?.serialNumber, 'same CA certificate');
  assert.equal(ca()?.key.spki, first?.key.spki, 'same CA key');
  await h.agent.stop();
  await h.store.close();
  await h.restart();
  assert.is(ca()?.chain[0]?.serialNumber, first?.chain[0]?.serialNumber, 'the stored record kept the CA');
  const before = h.issuer.caIssued.length;
  await h.clock.advance(0.4 * DAY);
  assert.is(h.issuer.caIssued.length, before, 'not due before 45 % of its life, restart or not');
  for (let i = 0; i < 4 * 60; i++) await h.clock.advance(MIN);
  assert.is(h.issuer.caIssued.length, before + 1, 'renewed by 55 %');
  // From now on devices are signed by the new CA.
  assert.is.not(ca()?.chain[0]?.serialNumber, first?.chain[0]?.serialNumber);
  await h.agent.stop();
});

test('the real issuer, sent no caCsr on renewal, re-signs only the SVID', async () => {
  const ih = await issuerHarness({ joinToken: { enabled: true } });
  try {
    const key = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const token = await ih.running.issuer.createJoinToken('gw-ca', 600_000);
    const begin = (await ih.call('POST', '/v1/attest/begin', { method: 'join-token', token }))
      .body as AttestBeginResponse;
    const svidKey = key();
    const got = await ih.call('POST', '/v1/attest/finish', {
      method: 'join-token',
      sessionId: begin.sessionId,
      csr: createCsr(svidKey),
      caCsr: createCsr(key()),
    });
    assert.is(got.status, 200, got.text);
    const id = got.body as IssuedIdentity;
    assert.is(id.deviceCaChain.length, 1);
    const renewKey = key();
    const renewed = await ih.call(
      'POST',
      '/v1/renew/finish',
      { sessionId: id.nextSessionId, csr: createCsr(renewKey) },
      { cert: id.svidChain[0] as Uint8Array, key: svidKey },
    );
    assert.is(renewed.status, 200, renewed.text);
    const r = renewed.body as IssuedIdentity;
    assert.equal(r.deviceCaChain, []);
    assert.ok(new X509Certificate(Buffer.from(r.svidChain[0] as Uint8Array)).checkPrivateKey(renewKey));
    const withCa = await ih.call(
      'POST',
      '/v1/renew/finish',
      { sessionId: r.nextSessionId, csr: createCsr(key()), caCsr: createCsr(key()) },
      { cert: r.svidChain[0] as Uint8Array, key: renewKey },
    );
    assert.is(withCa.status, 200, withCa.text);
    assert.is((withCa.body as IssuedIdentity).deviceCaChain.length, 1);
  } finally {
    await ih.running.close();
    rmSync(ih.dir, { recursive: true, force: true });
  }
});

test.run();
