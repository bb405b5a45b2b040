/**
 * Recovery end to end against the real issuer in process (helpers/real-issuer.ts): its join
 * tokens are single use, it checks the delegated CA's serial, chain, validity and the PoP
 * signature itself, and it refuses revoked and disabled gateways with its own codes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newP256Key } from '../../../runtime/agent/keys.ts';
import { createCsr } from '../../../runtime/svid/csr.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { rejects } from '../../helpers/rejects.ts';
import { HOUR, harness, MIN } from './helpers/harness.ts';
import type { RealIssuer } from './helpers/real-issuer.ts';

const GW = 'spiffe://fleet.example/gateway/gw-1';
const real = (r: RealIssuer | undefined): RealIssuer => {
  if (r === undefined) throw new Error('harness without the real issuer');
  return r;
};

test('real issuer: a join-token gateway recovers after 5 h away (SVID 1 h) with its spent token, and its offline issuances reach the audit after the revocation feed', async () => {
  const h = await harness(
    { breaker: { failures: 1000, openMs: MIN }, feedIntervalMs: 10 * MIN },
    { real: true },
  );
  const issuer = real(h.real).issuer;
  await h.clock.advance(0);
  assert.is(h.agent.svidSource.getX509Svid().spiffeId, GW);
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(5 * HOUR);
  await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  const key = newP256Key();
  const issued = await h.agent.deviceSigner.signDevice({ deviceId: 'offline-1', csrDer: createCsr(key) });
  assert.ok(issued.notAfter > h.clock.now());
  const bad = `${GW}/device/stolen`;
  await issuer.revoke('spiffe-id', bad);
  const revoked: string[] = [];
  h.agent.revocations.onRevoke((r) => revoked.push(...r.spiffeIds));
  h.issuer.faults.clear();
  const mark = h.issuer.calls.length;
  await h.clock.advance(5 * MIN);
  assert.ok(h.agent.svidSource.getX509Svid().notAfter > h.clock.now() + 50 * MIN, 'a fresh SVID');
  assert.is(h.issuer.count('/v1/attest/begin'), 1, 'the spent token was not tried again');
  assert.is(h.issuer.count('/v1/recover/finish'), 1);
  const after = h.issuer.calls.slice(mark).map((c) => c.path.split('?')[0]);
  assert.ok(after.indexOf('/v1/recover/finish') < after.indexOf('/v1/revocations'));
  assert.ok(after.indexOf('/v1/revocations') < after.indexOf('/v1/devices/issued'));
  assert.equal(revoked, [bad]);
  const audit = await issuer.auditEvents(0, 10_000);
  assert.ok(
    audit.some((e) => e.event === 'recover' && e.gateway === 'gw-1'),
    'the issuer audited the recovery',
  );
  assert.ok(
    audit.some((e) => JSON.stringify(e).includes(`${GW}/device/offline-1`)),
    'the offline issuance is in the issuer audit',
  );
  // Renewal over mTLS works with the recovered SVID.
  await h.clock.advance(0.6 * HOUR);
  assert.is(h.issuer.count('/v1/renew/finish'), 1);
  await h.agent.stop();
});

test('real issuer: restart while expired and offline, then recovery by PoP', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } }, { real: true });
  await h.clock.advance(0);
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(2 * HOUR);
  await h.agent.stop();
  await h.restart({ clock: new VirtualClock(h.clock.now() + HOUR) });
  await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  h.issuer.faults.clear();
  await h.clock.advance(5 * MIN);
  assert.is(h.agent.svidSource.getX509Svid().spiffeId, GW);
  assert.is(h.agent.status().lastRotation?.via, 'recover');
  await h.agent.stop();
});

for (const what of ['gateway ID', 'delegated CA serial'] as const)
  test(`real issuer: a revoked ${what} is refused recovery definitively, by its code in the status`, async () => {
    const h = await harness({ breaker: { failures: 1000, openMs: MIN } }, { real: true });
    const issuer = real(h.real).issuer;
    await h.clock.advance(0);
    const caSerial = (h.agent.svidSource.loaded()?.ca.chain[0]?.serialNumber ?? '')
      .toLowerCase()
      .replace(/^0+(?=.)/, '');
    h.issuer.faults.set('*', 'down');
    await h.clock.advance(2 * HOUR);
    if (what === 'gateway ID') await issuer.revoke('spiffe-id', GW);
    else await issuer.revoke('serial', caSerial);
    h.issuer.faults.clear();
    await h.clock.advance(5 * MIN);
    const s = h.agent.status();
    assert.is(s.upstream.state, 'refused');
    assert.is(s.upstream.lastError?.code, 'ERR_UPSTREAM_REFUSED');
    // Revoking a gateway also disables it, and the issuer checks that first.
    assert.is(
      s.upstream.lastError?.remoteCode,
      what === 'gateway ID' ? 'ERR_ISSUER_GATEWAY_DISABLED' : 'ERR_ISSUER_REVOKED',
    );
    assert.is(h.logger.lines.filter((l) => l.fields.event === 'identity.halted').length, 1);
    const n = h.issuer.calls.length;
    await h.clock.advance(3 * HOUR);
    assert.is(
      h.issuer.calls.slice(n).filter((c) => /\/v1\/(recover|attest|renew)\//.test(c.path)).length,
      0,
      'no further attempt',
    );
    await h.agent.stop();
  });

test('real issuer: a disabled gateway is refused recovery definitively; enabled again, an operator request recovers it', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } }, { real: true });
  const issuer = real(h.real).issuer;
  await h.clock.advance(0);
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(2 * HOUR);
  await issuer.setDisabled('gw-1', true);
  h.issuer.faults.clear();
  await h.clock.advance(5 * MIN);
  assert.is(h.agent.status().upstream.state, 'refused');
  assert.is(h.agent.status().upstream.lastError?.remoteCode, 'ERR_ISSUER_GATEWAY_DISABLED');
  await issuer.setDisabled('gw-1', false);
  await h.agent.rotateNow();
  assert.is(h.agent.svidSource.getX509Svid().spiffeId, GW);
  assert.is(h.agent.status().upstream.state, 'ok');
  await h.agent.stop();
});

test.run();
