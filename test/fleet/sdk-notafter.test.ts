/**
 * Regression test, found by the fleet simulator (issue 9): the device SDK documents
 * `device.notAfter` as "NotAfter of the current SVID", but `connectDevice` used to build the device
 * with `Object.assign(events, { ..., get notAfter() { ... } })`; Object.assign reads a getter once
 * and copies its value, so after a rotation `device.notAfter` still said the first SVID's
 * NotAfter. transport/device/index.ts now defines the getter with Object.defineProperty.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectDevice } from '../../transport/device/index.ts';
import { rig } from '../transport/setup.ts';

const r = await rig({
  policy: { version: 1, rules: [{ match: '{self}/device/*', publish: ['devices/{device}/#'] }] },
});

test('device.notAfter follows the rotation', async () => {
  const enrollAt = r.broker.addresses.enrollment as { host: string; port: number };
  const token = await r.joinToken('na-1', 60_000);
  const device = await connectDevice({
    dir: `${r.tmp}/na-1`,
    gateway: { host: '127.0.0.1', port: r.port },
    enroll: { host: '127.0.0.1', port: enrollAt.port, deviceId: 'na-1', token },
    clock: r.clock,
  });
  try {
    const first = device.notAfter;
    await r.clock.advance(60_000); // the renewed SVID's NotAfter lies later than the first one's
    const rotated = new Promise<number>((resolve) => device.once('rotated', resolve));
    await device.rotate();
    const next = await rotated;
    assert.ok(next > first, 'the renewed SVID lives longer');
    assert.is(device.notAfter, next, 'device.notAfter is the current SVID NotAfter');
  } finally {
    await device.close();
  }
});

test.after(() => r.close());

test.run();
