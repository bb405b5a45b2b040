import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { issuedLogOp } from '../../../runtime/agent/issued-log.ts';
import { newP256Key } from '../../../runtime/agent/keys.ts';
import { classifyFailure } from '../../../runtime/agent/refusal.ts';
import type { IssuerErrorCode } from '../../../runtime/errors.ts';
import { createCsr } from '../../../runtime/svid/csr.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { rejects } from '../../helpers/rejects.ts';
import { refusal } from './helpers/fake-issuer.ts';
import { HOUR, harness, MIN } from './helpers/harness.ts';

const RAW = { keyEncoding: 'utf8', valueEncoding: 'view' } as const;
const exchangeCalls = (calls: { path: string }[]): string[] =>
  calls.filter((c) => /^\/v1\/(renew|recover|attest)\/finish/.test(c.path)).map((c) => c.path);

test('a join-token gateway recovers after an outage longer than its SVID, with no new token', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN }, feedIntervalMs: MIN });
  h.issuer.consumeTokens = true;
  await h.clock.advance(0);
  const first = h.agent.svidSource.getX509Svid();
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(5 * HOUR);
  await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  // Offline, the delegated CA still signs devices.
  const key = newP256Key();
  const dev = await h.agent.deviceSigner.signDevice({ deviceId: 'sensor-1', csrDer: createCsr(key) });
  assert.ok(dev.notAfter > h.clock.now());
  assert.is(h.issuer.count('/v1/attest/begin'), 1, 'no re-attestation: the token was consumed');
  h.issuer.faults.clear();
  await h.clock.advance(5 * MIN); // within one backoff cap
  const svid = h.agent.svidSource.getX509Svid();
  assert.is(svid.spiffeId, first.spiffeId);
  assert.ok(svid.notAfter > h.clock.now() + 50 * MIN);
  assert.is(h.issuer.count('/v1/recover/finish'), 1);
  assert.is(h.issuer.count('/v1/attest/begin'), 1, 'recovered by PoP of the CA key, not by attestation');
  const rotated = h.logger.lines
    .filter((l) => l.fields.event === 'identity.rotated')
    .map((l) => l.fields.via);
  assert.equal(rotated, ['attest', 'recover']);
  assert.is(h.agent.status().upstream.state, 'ok');
  assert.is(h.agent.status().lastRotation?.via, 'recover');
  // And it renews normally afterwards.
  await h.clock.advance(0.6 * HOUR);
  assert.is(h.issuer.count('/v1/renew/finish'), 1);
  await h.agent.stop();
});

test('on reconnect: recovery, then the revocation feed, then the offline issuance log', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN }, feedIntervalMs: 10 * MIN });
  await h.clock.advance(0);
  const key = newP256Key();
  await h.agent.deviceSigner.signDevice({ deviceId: 'online', csrDer: createCsr(key) });
  await h.clock.advance(10 * MIN); // the feed poll uploads the online issuance
  assert.equal(
    h.issuer.uploads.map((u) => u.map((e) => e.spiffeId)),
    [['spiffe://fleet.example/gateway/gw-1/device/online']],
  );
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(2 * HOUR);
  const offline = await h.agent.deviceSigner.signDevice({ deviceId: 'offline', csrDer: createCsr(key) });
  const revokedId = 'spiffe://fleet.example/gateway/gw-1/device/bad';
  h.issuer.revocations = {
    sequence: 1,
    entries: [{ sequence: 1, kind: 'spiffe-id', value: revokedId, until: h.clock.now() + 5 * HOUR }],
  };
  const seen: string[] = [];
  h.agent.revocations.onRevoke((r) => seen.push(...r.spiffeIds));
  h.issuer.faults.clear();
  const mark = h.issuer.calls.length;
  await h.clock.advance(5 * MIN);
  const after = h.issuer.calls.slice(mark).map((c) => c.path.split('?')[0]);
  const at = (p: string): number => after.indexOf(p);
  assert.ok(at('/v1/recover/finish') >= 0, 'recovered');
  assert.ok(at('/v1/recover/finish') < at('/v1/revocations'), 'feed right after the recovery');
  assert.ok(at('/v1/revocations') < at('/v1/devices/issued'), 'revocations before the upload');
  assert.equal(seen, [revokedId]);
  const last = h.issuer.uploads.at(-1) ?? [];
  assert.equal(
    last.map((e) => [e.spiffeId, e.notAfter]),
    [['spiffe://fleet.example/gateway/gw-1/device/offline', offline.notAfter]],
    'only what was not accepted yet',
  );
  assert.is(
    (await h.db.keys({ gte: 'issued/', lt: 'issued/\uffff' }).all()).length,
    0,
    'accepted entries are deleted',
  );
  await h.agent.stop();
});

test('the issuance log goes up in batches of at most 500 and resumes after a failure and a restart', async () => {
  const h = await harness({ feedIntervalMs: 10 * MIN });
  await h.clock.advance(0);
  h.issuer.acceptUploads = 1;
  const key = newP256Key();
  const csrDer = createCsr(key);
  for (let i = 0; i < 620; i++) await h.agent.deviceSigner.signDevice({ deviceId: `d${i}`, csrDer });
  await h.clock.advance(10 * MIN);
  assert.equal(
    h.issuer.uploads.map((u) => u.length),
    [500],
    'first batch accepted, the second failed',
  );
  assert.ok(
    h.agent.counters.get('edgeward_feed_failures_total', { reason: 'ERR_UPSTREAM_UNAVAILABLE' }) >= 1,
  );
  await h.agent.stop();
  h.issuer.acceptUploads = Number.POSITIVE_INFINITY;
  await h.restart();
  await h.clock.advance(0);
  assert.equal(
    h.issuer.uploads.map((u) => u.length),
    [500, 120],
  );
  const serials = h.issuer.uploads.flat().map((e) => e.serial);
  assert.is(new Set(serials).size, 620, 'every issuance once, none twice');
  const times = h.issuer.uploads.flat().map((e) => e.issuedAt);
  assert.equal(
    times,
    [...times].sort((a, b) => a - b),
    'oldest first',
  );
  await h.agent.stop();
});

test('the breaker does not hold back recovery: the first-success probe runs the exchange at once', async () => {
  const h = await harness({
    backoff: { delay: () => 1000 },
    breaker: { failures: 3, openMs: 30 * MIN },
    probeMs: 15_000,
  });
  await h.clock.advance(0);
  // The SVID and the delegated CA both expire during the outage: only attestation is left.
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(25 * HOUR);
  assert.is(h.agent.status().deviceCa, undefined);
  assert.is(h.agent.status().breaker.state, 'open');
  h.issuer.faults.clear();
  const back = h.clock.now();
  await h.clock.advance(15_000);
  assert.ok(h.agent.svidSource.getX509Svid(), 'attested again within one probe interval');
  const attested = h.issuer.calls.filter((c) => c.path === '/v1/attest/finish').at(-1)?.at ?? 0;
  assert.ok(attested - back <= 15_000, `attested ${attested - back} ms after the issuer came back`);
  assert.is(h.agent.status().breaker.state, 'closed');
  assert.ok(h.logger.lines.some((l) => l.fields.event === 'upstream.probe' && l.fields.ok === true));
  await h.agent.stop();
});

test('an issuer that answers but refuses is not probed: its refusals wait out the breaker', async () => {
  const h = await harness({
    backoff: { delay: () => 1000 },
    breaker: { failures: 3, openMs: 30 * MIN },
    probeMs: 15_000,
  });
  await h.clock.advance(0);
  for (const path of ['/v1/renew', '/v1/recover', '/v1/attest'])
    h.issuer.refusals.set(path, 'ERR_ISSUER_PCR_MISMATCH');
  await h.agent.rotateNow();
  await h.clock.advance(2 * HOUR);
  const probes = h.issuer.calls.filter((c) => c.path === '/v1/bundle' && c.clientId === undefined);
  assert.is(probes.length, 0, 'no probe while the issuer answers');
  const attests = h.issuer.count('/v1/attest/begin') - 1;
  // 3 rounds until the breaker opens, then one trial per 30 min: about 3 + 4.
  assert.ok(attests >= 4 && attests <= 9, `attestations tried ${attests}`);
  assert.is(h.agent.status().upstream.state, 'failing');
  await h.agent.stop();
});

test('restart while the SVID is expired and the upstream away, then the upstream returns: recovery', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } });
  h.issuer.consumeTokens = true;
  await h.clock.advance(0);
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(3 * HOUR);
  await h.agent.stop();
  await h.restart({ clock: new VirtualClock(h.clock.now() + HOUR) });
  await h.clock.advance(MIN);
  await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  assert.ok(h.agent.status().deviceCa);
  h.issuer.faults.clear();
  await h.clock.advance(5 * MIN); // within one backoff cap
  assert.ok(h.agent.svidSource.getX509Svid());
  assert.is(h.issuer.count('/v1/recover/finish'), 1);
  // Restart right after the recovery: the recovered identity is served from the store.
  const served = h.agent.svidSource.getX509Svid();
  await h.agent.stop();
  await h.restart();
  assert.is(h.agent.svidSource.getX509Svid().notAfter, served.notAfter);
  assert.is(h.agent.status().lastRotation?.via, 'recover');
  await h.agent.stop();
});

test('a recovery the issuer cannot admit falls back to attestation at once, by its code', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } });
  await h.clock.advance(0);
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(2 * HOUR);
  h.issuer.faults.clear();
  h.issuer.caSerials.clear(); // the issuer does not know this CA's serial
  await h.clock.advance(5 * MIN);
  const refused = h.logger.lines.filter((l) => l.fields.event === 'identity.refused');
  assert.equal(
    refused.map((l) => [l.fields.via, l.fields.remoteCode, l.fields.next]),
    [['recover', 'ERR_ISSUER_POP_INVALID', 'attest']],
  );
  assert.ok(h.agent.svidSource.getX509Svid());
  assert.equal(exchangeCalls(h.issuer.calls).slice(-1), ['/v1/attest/finish']);
  await h.agent.stop();
});

test('a revoked gateway is refused recovery definitively: stopped, code in the status, CA still bounded', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } });
  await h.clock.advance(0);
  const caNotAfter = h.agent.status().deviceCa?.notAfter ?? 0;
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(2 * HOUR);
  h.issuer.faults.clear();
  h.issuer.refusals.set('/v1/recover', 'ERR_ISSUER_REVOKED');
  await h.clock.advance(5 * MIN);
  const s = h.agent.status();
  assert.is(s.upstream.state, 'refused');
  assert.is(s.upstream.lastError?.remoteCode, 'ERR_ISSUER_REVOKED');
  assert.is(h.logger.lines.filter((l) => l.fields.event === 'identity.halted').length, 1);
  const n = exchangeCalls(h.issuer.calls).length;
  await h.clock.advance(caNotAfter - h.clock.now());
  assert.is(exchangeCalls(h.issuer.calls).length, n, 'no attempt after the definitive refusal');
  assert.is(h.agent.status().deviceCa, undefined, 'local service still ends at the CA NotAfter');
  await h.agent.stop();
});

test('clock back below the floor while the SVID is expired: untrusted, no recovery, no signing', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN }, tickMs: 30_000 });
  await h.clock.advance(0);
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(2 * HOUR);
  const floorAt = h.clock.now();
  await h.agent.stop();
  h.issuer.faults.clear();
  const lost = new VirtualClock(floorAt - 30 * 86_400_000);
  await h.restart({ clock: lost });
  const before = exchangeCalls(h.issuer.calls).length + h.issuer.count('/v1/recover/begin');
  await h.clock.advance(HOUR);
  assert.is(h.agent.status().upstream.state, 'clock-untrusted');
  assert.is(exchangeCalls(h.issuer.calls).length + h.issuer.count('/v1/recover/begin'), before, 'no reissue');
  await rejects(
    () => h.agent.deviceSigner.signDevice({ deviceId: 'x', csrDer: createCsr(newP256Key()) }),
    'ERR_CLOCK_UNTRUSTED',
  );
  assert.ok(await h.db.get('gateway', RAW), 'the kept identity is not dropped');
  await h.agent.stop();
});

test('refusals are classified by the issuer code: only revoked, disabled and unknown gateways are definitive', () => {
  const refusedWith = (code: IssuerErrorCode) => refusal(code, 'https://i.test', '/v1/x');
  const definitive: IssuerErrorCode[] = [
    'ERR_ISSUER_REVOKED',
    'ERR_ISSUER_GATEWAY_DISABLED',
    'ERR_ISSUER_NOT_REGISTERED',
  ];
  for (const code of definitive)
    for (const mode of ['attest', 'renew', 'recover'] as const)
      assert.is(classifyFailure(mode, refusedWith(code)), 'definitive', `${mode} ${code}`);
  const curable: IssuerErrorCode[] = [
    'ERR_ISSUER_PCR_MISMATCH',
    'ERR_ISSUER_QUOTE_INVALID',
    'ERR_ISSUER_TOKEN_INVALID',
    'ERR_ISSUER_POP_INVALID',
    'ERR_ISSUER_CA_UNKNOWN',
    'ERR_ISSUER_CA_EXPIRED',
    'ERR_ISSUER_CLIENT_CERT',
    'ERR_ISSUER_METHOD_DISABLED',
  ];
  for (const code of curable) assert.is(classifyFailure('renew', refusedWith(code)), 'refused', code);
  // 409/404 (an expired session, an issuer without /v1/recover): another way for renew and recover.
  assert.is(classifyFailure('recover', refusedWith('ERR_ISSUER_NOT_FOUND')), 'refused');
  assert.is(classifyFailure('renew', refusedWith('ERR_ISSUER_SESSION_EXPIRED')), 'refused');
  assert.is(classifyFailure('attest', refusedWith('ERR_ISSUER_SESSION_EXPIRED')), 'transient');
  for (const code of ['ERR_ISSUER_RATE_LIMITED', 'ERR_ISSUER_INTERNAL', 'ERR_ISSUER_CLOSED'] as const)
    assert.is(classifyFailure('recover', refusedWith(code)), 'transient', code);
  assert.is(classifyFailure('renew', new Error('boom')), 'transient');
});

test('restart after a definitive refusal: one attempt at start, stopped again with the same code', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } });
  await h.clock.advance(0);
  h.issuer.refusals.set('/v1/', 'ERR_ISSUER_NOT_REGISTERED');
  await h.agent.rotateNow();
  assert.is(h.agent.status().upstream.state, 'refused');
  await h.agent.stop();
  const before = exchangeCalls(h.issuer.calls).length + h.issuer.count('/v1/renew/begin');
  await h.restart();
  await h.clock.advance(40 * MIN); // past the rotation time the restarted agent computes (~30 min)
  assert.is(h.issuer.count('/v1/renew/begin') + exchangeCalls(h.issuer.calls).length, before + 1);
  assert.is(h.agent.status().upstream.state, 'refused');
  assert.is(h.agent.status().upstream.lastError?.remoteCode, 'ERR_ISSUER_NOT_REGISTERED');
  assert.ok(
    h.agent.svidSource.getX509Svid(),
    'the valid SVID is still served (the issuer decides its fate by revocation)',
  );
  await h.agent.stop();
});

test('a store that cannot take an issued identity is a failed rotation: retried, nothing served from it', async () => {
  const h = await harness({ backoff: { delay: () => 1000 } });
  await h.clock.advance(0);
  const before = h.agent.svidSource.getX509Svid();
  const batch = h.db.batch.bind(h.db);
  let failures = 1;
  h.db.batch = ((ops: { key: string }[], o: unknown) => {
    if (failures > 0 && ops.some((op) => op.key === 'gateway')) {
      failures--;
      return Promise.reject(Object.assign(new Error('disk full'), { code: 'LEVEL_IO_ERROR' }));
    }
    return batch(ops as never, o as never);
  }) as unknown as typeof h.db.batch;
  await h.agent.rotateNow();
  assert.is(h.agent.svidSource.getX509Svid(), before, 'the unstored identity is not served');
  assert.is(h.agent.status().upstream.state, 'failing');
  assert.is(h.agent.status().upstream.lastError?.code, 'LEVEL_IO_ERROR');
  await h.clock.advance(1000);
  assert.is.not(h.agent.svidSource.getX509Svid(), before, 'retried and committed');
  assert.is(h.agent.status().upstream.state, 'ok');
  await h.agent.stop();
});

test('issuance log entries of another gateway ID are dropped with a warning, never holding back the log', async () => {
  const h = await harness({ feedIntervalMs: 10 * MIN });
  await h.clock.advance(0);
  await h.store.batch([
    issuedLogOp({
      deviceId: 'old',
      spiffeId: 'spiffe://fleet.example/gateway/gw-0/device/old',
      serial: 'abc',
      notAfter: h.clock.now() + HOUR,
      issuedAt: h.clock.now() - 1000,
    }),
  ]);
  await h.agent.deviceSigner.signDevice({ deviceId: 'new', csrDer: createCsr(newP256Key()) });
  await h.clock.advance(10 * MIN);
  assert.equal(
    h.issuer.uploads.flat().map((e) => e.spiffeId),
    ['spiffe://fleet.example/gateway/gw-1/device/new'],
  );
  const warned = h.logger.lines.filter((l) => l.fields.event === 'devices.foreign');
  assert.equal(
    warned.map((l) => l.fields.entries),
    [1],
  );
  assert.is((await h.db.keys({ gte: 'issued/', lt: 'issued/\uffff' }).all()).length, 0);
  await h.agent.stop();
});

test.run();
