/**
 * The whole attestation and renewal path with the issuer's CA key in a SoftHSM2 token (issue 19):
 * the key is generated in the token, the CA certificate is signed there, and an agent attests
 * with a join token and renews over mTLS against the real issuer, its SVIDs and delegated CA
 * chaining to that CA. Then the token is pulled out under the running issuer: the renewal is
 * refused with ERR_ISSUER_PKCS11_TOKEN, the issuer is not ready (the reason names the code),
 * nothing half-signed is stored (no issued record, the gateway record unchanged), and the agent
 * keeps serving its SVID; once the token is back the issuer is ready and the agent renews.
 */
import { X509Certificate } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generatePkcs11CaKey } from '../../../runtime/issuer/pkcs11/key.ts';
import { createRootCaWithKey } from '../../../runtime/svid/authority.ts';
import { seededRandom } from '../../../sim/random.ts';
import { softHsmToken } from '../../helpers/softhsm.ts';
import { HOUR, harness, MIN } from './helpers/harness.ts';

const START = Date.UTC(2026, 0, 1);

test('attest and renew with the CA key in SoftHSM2; a pulled token refuses, stores nothing, and recovers', async () => {
  const t = softHsmToken();
  const key = await generatePkcs11CaKey({
    uri: t.uri('issuer-ca'),
    module: t.module,
    pinFile: t.pinFile,
    retryMs: 0,
  });
  const certificate = await createRootCaWithKey({
    trustDomain: 'fleet.example',
    key,
    notBefore: START - HOUR,
    notAfter: START + 400 * 24 * HOUR,
    random: seededRandom('pkcs11-ca'),
  });
  const ca = new X509Certificate(certificate);
  const h = await harness({}, { real: true, realCa: { certificate, key }, start: START });
  const real = h.real as NonNullable<typeof h.real>;
  try {
    await h.clock.advance(0);
    const first = h.agent.svidSource.getX509Svid();
    assert.is(first.spiffeId, 'spiffe://fleet.example/gateway/gw-1');
    const leaf = first.chain[0] as X509Certificate;
    assert.ok(leaf.verify(ca.publicKey), 'the gateway SVID is signed by the token key');
    const roots = h.agent.bundleSource.getBundleFor('fleet.example').roots;
    assert.ok(
      roots.some((r) => r.raw.equals(ca.raw)),
      roots.map((r) => r.subject).join('; '),
    );
    assert.equal(await real.issuer.readiness(), []);

    await h.clock.advance(0.56 * HOUR);
    assert.is(h.issuer.count('/v1/renew/finish'), 1);
    const second = h.agent.svidSource.getX509Svid();
    assert.ok(second.notAfter > first.notAfter);
    assert.ok((second.chain[0] as X509Certificate).verify(ca.publicKey));

    // The token goes away while the issuer runs.
    const issued = (await real.store.list('issued/')).length;
    const gateway = await real.store.getEntry('gw/gw-1');
    t.remove();
    const reasons = await real.issuer.readiness();
    assert.ok(
      reasons.some((r) => r.startsWith('ca: ERR_ISSUER_PKCS11_TOKEN')),
      `not ready: ${reasons.join('; ')}`,
    );
    await h.clock.advance(0.56 * HOUR);
    const refused = (await real.issuer.auditEvents(0, 10_000)).filter((e) => e.event === 'refuse');
    assert.ok(
      refused.some((e) => e.code === 'ERR_ISSUER_PKCS11_TOKEN'),
      'the renewal was refused for the token',
    );
    assert.is((await real.store.list('issued/')).length, issued, 'no certificate recorded');
    assert.is((await real.store.getEntry('gw/gw-1'))?.version, gateway?.version, 'gateway record unchanged');
    assert.is(h.agent.svidSource.getX509Svid(), second, 'the agent keeps serving its SVID');

    // Back again: ready, and the agent's next try renews.
    t.restore();
    assert.equal(await real.issuer.readiness(), []);
    await h.clock.advance(10 * MIN);
    const third = h.agent.svidSource.getX509Svid();
    assert.ok(third.notAfter > second.notAfter, 'renewed after the token came back');
    assert.ok((third.chain[0] as X509Certificate).verify(ca.publicKey));
  } finally {
    await h.agent.stop();
    await real.issuer.close();
    await key.close();
  }
});

test.run();
