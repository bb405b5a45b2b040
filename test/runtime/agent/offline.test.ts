import { X509Certificate } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { newP256Key } from '../../../runtime/agent/keys.ts';
import { createCsr } from '../../../runtime/svid/csr.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { rejects } from '../../helpers/rejects.ts';
import { HOUR, harness, MIN } from './helpers/harness.ts';

const RAW = { keyEncoding: 'utf8', valueEncoding: 'view' } as const;

test('restart while the issuer is down serves the cached SVID at once', async () => {
  const h = await harness();
  await h.clock.advance(10 * MIN);
  const before = h.agent.svidSource.getX509Svid();
  await h.agent.stop();
  h.issuer.faults.set('*', 'down');
  const calls = h.issuer.calls.length;
  await h.restart();
  // No clock advance, no upstream answer: served straight from the store.
  const svid = h.agent.svidSource.getX509Svid();
  assert.is(svid.spiffeId, before.spiffeId);
  assert.is(svid.notAfter, before.notAfter);
  assert.ok(svid.privateKey.equals(before.privateKey));
  assert.is(h.issuer.calls.length, calls, 'start() made no upstream call before serving');
  assert.ok(h.logger.lines.some((l) => l.fields.event === 'identity.cached'));
  assert.ok(h.agent.status().serving);
  assert.ok(h.agent.bundleSource.getBundleFor('fleet.example'));
  await h.agent.stop();
});

test('offline, the SVID is served until exactly NotAfter, then refused; the CA outlives it', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } });
  await h.clock.advance(0);
  const notAfter = h.agent.svidSource.getX509Svid().notAfter;
  h.issuer.faults.set('*', 'down');
  const changedAt: number[] = [];
  h.agent.svidSource.onChange(() => changedAt.push(h.clock.now()));
  await h.clock.advance(notAfter - h.clock.now() - 1);
  assert.is(h.agent.svidSource.getX509Svid().notAfter, notAfter);
  await h.clock.advance(1);
  await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  assert.equal(changedAt, [notAfter], 'one change notification, at NotAfter');
  assert.ok(h.logger.lines.some((l) => l.fields.event === 'identity.svid-expired'));
  // The delegated CA (24 h) still signs devices offline; the device SVID is clamped to its NotAfter.
  const ca = h.agent.status().deviceCa;
  assert.ok(ca !== undefined);
  await h.clock.advance((ca?.notAfter ?? 0) - h.clock.now() - 30 * MIN);
  const key = newP256Key();
  const out = await h.agent.deviceSigner.signDevice({ deviceId: 'sensor-1', csrDer: createCsr(key) });
  assert.is(out.notAfter, ca?.notAfter, 'device SVID never outlives the delegated CA');
  const leaf = new X509Certificate(Buffer.from(out.chain[0] as Uint8Array));
  assert.is(out.notAfter, Date.parse(leaf.validTo), 'the NotAfter reported is the certificate’s');
  await h.clock.advance(30 * MIN);
  await rejects(
    () => h.agent.deviceSigner.signDevice({ deviceId: 'sensor-2', csrDer: createCsr(key) }),
    'ERR_SVID_UNAVAILABLE',
  );
  assert.ok(
    h.logger.lines.some((l) => l.fields.event === 'identity.none'),
    'says plainly that all expired',
  );
  assert.ok(h.issuer.count('/v1/recover/begin') > 10, 'keeps trying to recover while the CA is valid');
  assert.ok(h.issuer.count('/v1/attest/begin') >= 1, 'then attestation');
  await h.agent.stop();
});

test('an expired cache is not loaded: it is deleted and the agent attests afresh', async () => {
  const h = await harness();
  await h.clock.advance(0);
  await h.agent.stop();
  await h.restart({ clock: new VirtualClock(h.clock.now() + 25 * HOUR) });
  await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  assert.is(await h.db.get('gateway', RAW), undefined);
  assert.ok(h.logger.lines.some((l) => l.fields.event === 'identity.expired'));
  await h.clock.advance(0);
  assert.ok(h.agent.svidSource.getX509Svid());
  assert.is(h.issuer.count('/v1/attest/finish'), 2);
  await h.agent.stop();
});

test('an identity whose SVID expired while its delegated CA is valid is kept across restarts, until the CA ends', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } });
  await h.clock.advance(0);
  const svidNotAfter = h.agent.svidSource.getX509Svid().notAfter;
  const caNotAfter = h.agent.status().deviceCa?.notAfter ?? 0;
  assert.ok(caNotAfter > svidNotAfter + 20 * HOUR);
  h.issuer.faults.set('*', 'down');
  await h.agent.stop();
  const key = newP256Key();
  // Restart just after the SVID's end, then twice more inside the CA's validity, the last 1 ms before its end.
  for (const at of [svidNotAfter, svidNotAfter + MIN, caNotAfter - 1]) {
    await h.restart({ clock: new VirtualClock(at) });
    await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
    const s = h.agent.status();
    assert.not.ok(s.serving, 'an expired SVID is never served');
    assert.is(s.spiffeId, 'spiffe://fleet.example/gateway/gw-1');
    assert.is(s.deviceCa?.notAfter, caNotAfter, 'the delegated CA is kept');
    assert.ok(await h.db.get('gateway', RAW), 'the record stays in the store');
    assert.ok(h.logger.lines.some((l) => l.fields.event === 'identity.ca-only'));
    const out = await h.agent.deviceSigner.signDevice({ deviceId: 'sensor-1', csrDer: createCsr(key) });
    assert.ok(out.notAfter <= caNotAfter, 'device SVIDs are bounded by the CA');
    assert.is(out.notAfter, Math.min(at + HOUR, caNotAfter));
    await h.clock.advance(Math.min(MIN, caNotAfter - at - 1));
    assert.ok(h.agent.status().deviceCa, 'a failing upstream does not drop the kept CA');
    await h.agent.stop();
  }
  // At the CA's NotAfter nothing is valid: the identity is dropped and nothing is signed.
  await h.restart({ clock: new VirtualClock(caNotAfter) });
  assert.is(h.agent.status().deviceCa, undefined);
  assert.is(await h.db.get('gateway', RAW), undefined);
  assert.ok(h.logger.lines.some((l) => l.fields.event === 'identity.expired'));
  await rejects(
    () => h.agent.deviceSigner.signDevice({ deviceId: 'sensor-2', csrDer: createCsr(key) }),
    'ERR_SVID_UNAVAILABLE',
  );
  await h.agent.stop();
});

test('a running agent keeps the CA past the SVID and stops signing exactly at the CA NotAfter', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } });
  await h.clock.advance(0);
  const caNotAfter = h.agent.status().deviceCa?.notAfter ?? 0;
  h.issuer.faults.set('*', 'down');
  const key = newP256Key();
  await h.clock.advance(caNotAfter - h.clock.now() - 1);
  await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  const out = await h.agent.deviceSigner.signDevice({ deviceId: 'late', csrDer: createCsr(key) });
  assert.is(out.notAfter, caNotAfter);
  await h.clock.advance(1);
  assert.is(h.agent.status().deviceCa, undefined);
  await rejects(
    () => h.agent.deviceSigner.signDevice({ deviceId: 'later', csrDer: createCsr(key) }),
    'ERR_SVID_UNAVAILABLE',
  );
  await h.agent.stop();
});

test('a tampered cached identity is dropped, never served, and re-obtained', async () => {
  const h = await harness();
  await h.clock.advance(0);
  await h.agent.stop();
  const raw = Buffer.from((await h.db.get('gateway', RAW)) as Uint8Array);
  raw[40] = (raw[40] as number) ^ 0x80;
  await h.db.put('gateway', raw, RAW);
  await h.restart();
  await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  assert.is(h.agent.status().store.dropped, 1);
  await h.clock.advance(0);
  assert.ok(h.agent.svidSource.getX509Svid());
  assert.is(h.issuer.count('/v1/attest/finish'), 2);
  await h.agent.stop();
});

test('clock going back below the floor: untrusted, no signing, no renewal; sane again resumes', async () => {
  const h = await harness({ tickMs: 30_000 });
  await h.clock.advance(20 * MIN);
  const key = newP256Key();
  await h.agent.deviceSigner.signDevice({ deviceId: 'd1', csrDer: createCsr(key) });
  const floor = h.clock.now();
  await h.agent.stop();
  // Reboot without an RTC: the clock says last year.
  const lost = new VirtualClock(floor - 400 * 86_400_000);
  await h.restart({ clock: lost });
  assert.ok(h.logger.lines.some((l) => l.fields.event === 'clock.untrusted'));
  assert.not.ok(h.agent.status().clock.trusted);
  // Expiry is judged against the floor, not the lie: the SVID is still served until its NotAfter.
  assert.ok(h.agent.svidSource.getX509Svid());
  await rejects(
    () => h.agent.deviceSigner.signDevice({ deviceId: 'd2', csrDer: createCsr(key) }),
    'ERR_CLOCK_UNTRUSTED',
  );
  const renewals = h.issuer.count('/v1/renew/begin') + h.issuer.count('/v1/attest/begin');
  await h.clock.advance(2 * HOUR);
  assert.is(h.issuer.count('/v1/renew/begin') + h.issuer.count('/v1/attest/begin'), renewals, 'no exchange');
  assert.is(h.agent.status().upstream.state, 'clock-untrusted');
  // NTP fixes the clock: trusted again, a rotation check runs at once.
  lost.set(floor + 5 * MIN);
  await h.clock.advance(30_000);
  assert.ok(h.agent.status().clock.trusted);
  assert.ok(h.logger.lines.some((l) => l.fields.event === 'clock.trusted'));
  assert.ok(h.issuer.count('/v1/renew/begin') + h.issuer.count('/v1/attest/begin') > renewals);
  await h.agent.deviceSigner.signDevice({ deviceId: 'd3', csrDer: createCsr(key) });
  await h.agent.stop();
});

test('a small backward step (NTP correction within tolerance) stays trusted', async () => {
  const h = await harness();
  await h.clock.advance(10 * MIN);
  h.clock.set(h.clock.now() - 20_000);
  await h.clock.advance(30_000);
  assert.ok(h.agent.status().clock.trusted);
  await h.agent.stop();
});

test('a forward clock jump triggers an immediate rotation check', async () => {
  const h = await harness({ tickMs: 30_000 });
  await h.clock.advance(MIN);
  const svid = h.agent.svidSource.getX509Svid();
  // Jump 50 min: the rotation timer still has ~26 min to go on its own, but the tick notices.
  h.clock.set(h.clock.now() + 50 * MIN);
  await h.clock.advance(30_000);
  assert.ok(h.logger.lines.some((l) => l.fields.event === 'clock.jump'));
  assert.is(h.issuer.count('/v1/renew/finish'), 1);
  assert.is.not(h.agent.svidSource.getX509Svid(), svid);
  await h.agent.stop();
});

test('device signing: chain verifies to the delegated CA, ids and CSRs are checked, records counted', async () => {
  const h = await harness();
  await h.clock.advance(0);
  const key = newP256Key();
  const out = await h.agent.deviceSigner.signDevice({ deviceId: 'sensor-7', csrDer: createCsr(key) });
  const [leafDer, caDer] = out.chain;
  const leaf = new X509Certificate(leafDer as Uint8Array);
  const ca = new X509Certificate(caDer as Uint8Array);
  assert.ok(leaf.verify(ca.publicKey));
  assert.ok(leaf.checkPrivateKey(key));
  assert.is(leaf.subjectAltName, 'URI:spiffe://fleet.example/gateway/gw-1/device/sensor-7');
  assert.is(out.notAfter, h.clock.now() + HOUR);
  assert.is(h.agent.deviceSigner.gatewayId, 'spiffe://fleet.example/gateway/gw-1');
  assert.is(h.agent.status().devices, 1);
  for (const bad of ['', '../x', 'a/b', 'x'.repeat(65), 'sp ace'])
    await rejects(
      () => h.agent.deviceSigner.signDevice({ deviceId: bad, csrDer: createCsr(key) }),
      'ERR_DEVICE_ID_INVALID',
    );
  const csr = createCsr(key);
  csr[csr.length - 3] = (csr[csr.length - 3] as number) ^ 1;
  await rejects(
    () => h.agent.deviceSigner.signDevice({ deviceId: 'ok', csrDer: csr }),
    'ERR_DEVICE_CSR_INVALID',
  );
  await rejects(
    () => h.agent.deviceSigner.signDevice({ deviceId: 'ok', csrDer: new Uint8Array([1, 2, 3]) }),
    'ERR_DEVICE_CSR_INVALID',
  );
  // Device records survive a restart; expired ones are pruned.
  await h.agent.stop();
  await h.restart();
  assert.is(h.agent.status().devices, 1);
  await h.agent.stop();
  await h.restart({ clock: new VirtualClock(h.clock.now() + 2 * HOUR) });
  assert.is(h.agent.status().devices, 0);
  assert.is(await h.db.get('device/sensor-7', RAW), undefined);
  await h.agent.stop();
});

test('revocations: the feed is followed, listeners told once, state persisted across restarts', async () => {
  const h = await harness({ feedIntervalMs: MIN });
  await h.clock.advance(0);
  const seen: { spiffeIds: readonly string[]; serials: readonly string[] }[] = [];
  h.agent.revocations.onRevoke((r) => seen.push(r));
  const until = h.clock.now() + 2 * HOUR;
  h.issuer.revocations = {
    sequence: 2,
    entries: [
      { sequence: 1, kind: 'spiffe-id', value: 'spiffe://fleet.example/gateway/gw-1/device/bad', until },
      { sequence: 2, kind: 'serial', value: '00AB12', until },
    ],
  };
  await h.clock.advance(MIN);
  assert.equal(seen, [{ spiffeIds: ['spiffe://fleet.example/gateway/gw-1/device/bad'], serials: ['ab12'] }]);
  assert.ok(h.agent.revocations.isRevokedId('spiffe://fleet.example/gateway/gw-1/device/bad'));
  assert.ok(h.agent.revocations.isRevokedSerial('ab12'));
  assert.ok(h.agent.revocations.isRevokedSerial('00AB12'));
  assert.not.ok(h.agent.revocations.isRevokedId('spiffe://fleet.example/gateway/gw-1/device/good'));
  await h.clock.advance(MIN);
  assert.is(seen.length, 1, 'not told twice');
  assert.ok(h.issuer.calls.some((c) => c.path === '/v1/revocations?since=2'));
  await h.agent.stop();
  await h.restart();
  assert.ok(h.agent.revocations.isRevokedSerial('ab12'));
  assert.is(h.agent.status().revocations.sequence, 2);
  await h.agent.stop();
  await h.restart({ clock: new VirtualClock(until + 1) });
  assert.not.ok(h.agent.revocations.isRevokedSerial('ab12'), 'forgotten after until');
  await h.agent.stop();
});

test('an unchanged feed is not written to the store again (flash wears out)', async () => {
  const h = await harness({ feedIntervalMs: MIN });
  await h.clock.advance(0);
  const written: string[] = [];
  const batch = h.db.batch.bind(h.db);
  h.db.batch = ((ops: { key: string }[], o: unknown) => {
    for (const op of ops) if (op.key !== 'floor') written.push(op.key); // the floor persists every 5 min
    return batch(ops as never, o as never);
  }) as unknown as typeof h.db.batch;
  await h.clock.advance(10 * MIN);
  assert.equal(written, [], 'ten polls of an unchanged feed and bundle write nothing');
  h.issuer.revocations = { sequence: 3, entries: [] };
  await h.clock.advance(MIN);
  assert.equal(written, ['revocations'], 'a new feed sequence is written once');
  await h.clock.advance(5 * MIN);
  assert.equal(written, ['revocations']);
  await h.agent.stop();
});

test('a new bundle from the feed replaces the old one and notifies', async () => {
  const h = await harness({ feedIntervalMs: MIN });
  await h.clock.advance(0);
  let n = 0;
  h.agent.bundleSource.onChange(() => n++);
  h.issuer.bundleSequence = 7;
  await h.clock.advance(MIN);
  assert.is(h.agent.bundleSource.getBundleFor('fleet.example').sequence, 7);
  assert.is(n, 1);
  await h.agent.stop();
  await h.restart();
  assert.is(h.agent.bundleSource.getBundleFor('fleet.example').sequence, 7);
  await h.agent.stop();
});

test.run();
