/**
 * The per-device issuance budget shared by EST and MQTT renewal: past `perMinute` certificates
 * for one device id in a minute, `ERR_ENROLL_RATE_LIMITED` before anything is signed; other
 * devices unaffected; a refused signing gives its unit back; the next minute is a new budget.
 */
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { DeviceSigner } from '../../runtime/sources/types.ts';
import { createCsr } from '../../runtime/svid/csr.ts';
import { VirtualClock } from '../../sim/clock/virtual-clock.ts';
import { limitingIssuance } from '../../transport/enroll/issuance-limit.ts';
import { buildPki } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';

const clock = new VirtualClock(Date.now());
const pki = await buildPki({ now: clock.now() });
const csr = () => createCsr(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'x');

test('per device per minute, before signing; refusals give the unit back', async () => {
  const inner = pki.signer(clock);
  let signed = 0;
  const counting: DeviceSigner = {
    gatewayId: inner.gatewayId,
    async signDevice(req) {
      signed++;
      return inner.signDevice(req);
    },
  };
  const s = limitingIssuance(counting, { perMinute: 2, clock });
  await s.signDevice({ deviceId: 'a', csrDer: csr() });
  await rejects(() => s.signDevice({ deviceId: 'a', csrDer: Buffer.from('bad') }), 'ERR_DEVICE_CSR_INVALID');
  await s.signDevice({ deviceId: 'a', csrDer: csr() });
  const before = signed;
  await rejects(() => s.signDevice({ deviceId: 'a', csrDer: csr() }), 'ERR_ENROLL_RATE_LIMITED');
  assert.is(signed, before, 'nothing signed past the budget');
  await s.signDevice({ deviceId: 'b', csrDer: csr() });
  await clock.advance(60_000);
  await s.signDevice({ deviceId: 'a', csrDer: csr() });
  assert.is(s.gatewayId, inner.gatewayId);
});

test.run();
