/**
 * `/v1/devices/issued` over the issuer's real HTTPS front: a gateway reports the device
 * certificates it issued offline under its delegated CA; each lands in the audit log (once, even
 * when an upload is retried) and as an issued record (so `revoke --serial` keeps a device serial
 * exactly as long as it is valid). Refusals: no or foreign client certificate, an entry outside
 * the caller's /device/ path, a serial of another certificate, more than 500 entries, a body over
 * the limit, malformed entries.
 */
import { rmSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { IssuedRecord } from '../../../runtime/issuer/records.ts';
import { issuerCbor } from '../../../runtime/issuer/store.ts';
import { parseCertificate } from '../../../runtime/svid/certificate.ts';
import {
  type AttestBeginResponse,
  type DeviceIssuedEntry,
  type IssuedIdentity,
  MAX_DEVICES_ISSUED,
  MAX_DEVICES_ISSUED_BODY_BYTES,
} from '../../../runtime/upstream/protocol.ts';
import { errorCode, type Harness, harness, keyAndCsr, TD } from './harness.ts';

let h: Harness;
test.before(async () => {
  h = await harness(
    { joinToken: { enabled: true } },
    { rateLimit: { perAddress: 1000, perGateway: 1000, windowMs: 60_000 } },
  );
});
test.after(async () => {
  await h.running.close();
  rmSync(h.dir, { recursive: true, force: true });
});

async function enroll(name: string) {
  const token = await h.running.issuer.createJoinToken(name, 600_000);
  const b = (await h.call('POST', '/v1/attest/begin', { method: 'join-token', token }))
    .body as AttestBeginResponse;
  const k = keyAndCsr();
  const fin = await h.call('POST', '/v1/attest/finish', {
    method: 'join-token',
    sessionId: b.sessionId,
    csr: k.csr,
    caCsr: keyAndCsr().csr,
  });
  assert.is(fin.status, 200, fin.text);
  const id = fin.body as IssuedIdentity;
  return { id, peer: { cert: id.svidChain[0] as Uint8Array, key: k.key } };
}

let serialN = 0x1000;
function entry(gateway: string, device: string, over: Partial<DeviceIssuedEntry> = {}): DeviceIssuedEntry {
  const now = h.clock.now();
  serialN += 1;
  return {
    spiffeId: `spiffe://${TD}/gateway/${gateway}/device/${device}`,
    serial: `4a${serialN.toString(16)}`,
    notBefore: now - 60_000,
    notAfter: now + 3_600_000,
    issuedAt: now - 60_000,
    ...over,
  };
}

test('entries land in the audit log once each and as issued records; revoke --serial uses their NotAfter', async () => {
  const gw = await enroll('gw-log');
  const entries = [entry('gw-log', 'dev-1'), entry('gw-log', 'dev-2'), entry('gw-log', 'a.b')];
  const r = await h.call('POST', '/v1/devices/issued', { entries }, gw.peer);
  assert.is(r.status, 200, r.text);
  assert.equal(r.body, { accepted: 3 });
  // A retried upload (the answer was lost) is accepted again and audited once.
  const again = await h.call('POST', '/v1/devices/issued', { entries }, gw.peer);
  assert.equal(again.body, { accepted: 3 });
  const events = (await h.running.issuer.auditEvents()).filter((e) => e.event === 'device');
  assert.equal(
    events.map((e) => [e.gateway, e.spiffeId, e.serials?.[0]]),
    entries.map((e) => ['gw-log', e.spiffeId, e.serial]),
  );
  const rec = await h.store.get<IssuedRecord>(`issued/${entries[0]?.serial}`);
  assert.equal(rec, {
    spiffeId: entries[0]?.spiffeId,
    gateway: 'gw-log',
    kind: 'device',
    notAfter: entries[0]?.notAfter,
  });
  const rev = await h.running.issuer.revoke('serial', entries[0]?.serial as string);
  assert.is(rev.until, entries[0]?.notAfter);
  // An empty upload is fine.
  assert.equal((await h.call('POST', '/v1/devices/issued', { entries: [] }, gw.peer)).body, { accepted: 0 });
});

test('an entry outside the caller /device/ path refuses the whole request with ERR_ISSUER_DEVICE_SCOPE (403)', async () => {
  const gw = await enroll('gw-scope');
  await enroll('gw-other');
  const before = (await h.running.issuer.auditEvents()).filter((e) => e.event === 'device').length;
  for (const spiffeId of [
    `spiffe://${TD}/gateway/gw-other/device/dev-1`,
    `spiffe://${TD}/gateway/gw-scope`,
    `spiffe://${TD}/gateway/gw-scope/workload/w`,
    `spiffe://${TD}/gateway/gw-scope/device/a/b`,
    `spiffe://other.example/gateway/gw-scope/device/dev-1`,
    `spiffe://${TD}/gateway/gw-scope/device/`,
    'not a spiffe id',
  ]) {
    const r = await h.call(
      'POST',
      '/v1/devices/issued',
      { entries: [entry('gw-scope', 'ok'), entry('gw-scope', 'x', { spiffeId })] },
      gw.peer,
    );
    assert.is(r.status, 403, spiffeId);
    assert.is(errorCode(r.body), 'ERR_ISSUER_DEVICE_SCOPE', spiffeId);
  }
  // A serial the issuer knows as another certificate (the gateway's own SVID) is refused too.
  const own = parseCertificate(gw.id.svidChain[0] as Uint8Array).serialHex;
  const r = await h.call(
    'POST',
    '/v1/devices/issued',
    { entries: [entry('gw-scope', 'd', { serial: own })] },
    gw.peer,
  );
  assert.is(errorCode(r.body), 'ERR_ISSUER_DEVICE_SCOPE');
  const after = (await h.running.issuer.auditEvents()).filter((e) => e.event === 'device').length;
  assert.is(after, before, 'nothing of a refused request is recorded');
  assert.ok((await h.store.get<IssuedRecord>(`issued/${own}`))?.kind === 'svid', 'the SVID record is intact');
});

test('bounds: more than 500 entries is 413, a body over the limit (384 KiB) is 413, malformed entries are 400', async () => {
  const gw = await enroll('gw-bounds');
  const many = Array.from({ length: MAX_DEVICES_ISSUED + 1 }, (_, i) => entry('gw-bounds', `d${i}`));
  const r1 = await h.call('POST', '/v1/devices/issued', { entries: many }, gw.peer);
  assert.is(r1.status, 413);
  assert.is(errorCode(r1.body), 'ERR_ISSUER_BODY_TOO_LARGE');
  // 500 entries of long device IDs fit the body limit and are accepted.
  const long = 'd'.repeat(60);
  const full = Array.from({ length: MAX_DEVICES_ISSUED }, (_, i) =>
    entry('gw-bounds', `${long}${i}`.slice(-64)),
  );
  const r2 = await h.call('POST', '/v1/devices/issued', { entries: full }, gw.peer);
  assert.is(r2.status, 200, r2.text);
  assert.equal(r2.body, { accepted: MAX_DEVICES_ISSUED });
  const big = await h.call('POST', '/v1/devices/issued', undefined, {
    ...gw.peer,
    raw: Buffer.alloc(MAX_DEVICES_ISSUED_BODY_BYTES + 1),
  });
  assert.is(big.status, 413);
  for (const bad of [
    { entries: 'x' },
    {},
    { entries: [{ ...entry('gw-bounds', 'm'), serial: '00ab' }] },
    { entries: [{ ...entry('gw-bounds', 'm'), serial: 'AB' }] },
    { entries: [{ ...entry('gw-bounds', 'm'), notAfter: 1, notBefore: 2 }] },
    { entries: [{ ...entry('gw-bounds', 'm'), issuedAt: -1 }] },
    { entries: [7] },
  ]) {
    const r = await h.call('POST', '/v1/devices/issued', bad, gw.peer);
    assert.is(r.status, 400, JSON.stringify(bad).slice(0, 80));
    assert.is(errorCode(r.body), 'ERR_ISSUER_BAD_REQUEST');
  }
});

test('without a current gateway SVID the log is refused: ERR_ISSUER_CLIENT_CERT (401); revoked: 403', async () => {
  const gw = await enroll('gw-auth');
  const none = await h.call('POST', '/v1/devices/issued', { entries: [] });
  assert.is(none.status, 401);
  assert.is(errorCode(none.body), 'ERR_ISSUER_CLIENT_CERT');
  await h.running.issuer.revoke('spiffe-id', `spiffe://${TD}/gateway/gw-auth`);
  const revoked = await h.call('POST', '/v1/devices/issued', { entries: [entry('gw-auth', 'd')] }, gw.peer);
  assert.is(revoked.status, 403);
  assert.is(errorCode(revoked.body), 'ERR_ISSUER_REVOKED');
});

test('the body limit holds a full batch of the longest IDs an issuer can have (else an agent could never upload it)', () => {
  const td = `${'t'.repeat(251)}.com`; // 255 characters, the longest trust domain
  const name = (c: string, i: number) => `${c.repeat(64)}${i}`.slice(-64);
  const entries = Array.from({ length: MAX_DEVICES_ISSUED }, (_, i) => ({
    spiffeId: `spiffe://${td}/gateway/${name('g', 0)}/device/${name('d', i)}`,
    serial: `7${'f'.repeat(39)}`,
    notBefore: 4_102_444_800_000,
    notAfter: 4_102_444_800_000,
    issuedAt: 4_102_444_800_000,
  }));
  const size = Buffer.from(issuerCbor.encode({ entries })).length;
  assert.ok(size <= MAX_DEVICES_ISSUED_BODY_BYTES, `${size} bytes > ${MAX_DEVICES_ISSUED_BODY_BYTES}`);
});

test.run();
