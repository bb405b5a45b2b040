/**
 * Recovery by proof of possession of the delegated CA key (`/v1/recover/begin|finish`), over the
 * issuer's real HTTPS front on a virtual clock: a join-token gateway whose SVID expired while its
 * delegated CA is valid gets a new SVID with no person involved, and every refusal has its code
 * and status: expired CA, CA of another gateway, unrecorded serial, foreign chain, bad
 * signature, replayed session (the same finish again is answered again), revoked and disabled gateways, revoked CA serial, rate limit.
 * (tpm gateways: recover-tpm.swtpm.test.ts.)
 */
import { type KeyObject, sign, X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readPrivateKeyFile } from '../../../runtime/issuer/files.ts';
import type { GatewayRecord, IssuedRecord } from '../../../runtime/issuer/records.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { parseCertificate } from '../../../runtime/svid/certificate.ts';
import { parseCsr } from '../../../runtime/svid/csr.ts';
import { caPopSignedData } from '../../../runtime/svid/pop.ts';
import { createSigner, spkiOf } from '../../../runtime/svid/signer.ts';
import type {
  AttestBeginResponse,
  IssuedIdentity,
  RecoverBeginResponse,
} from '../../../runtime/upstream/protocol.ts';
import { seededRandom } from '../../../sim/random.ts';
import { errorCode, type Harness, harness, keyAndCsr, TD } from './harness.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const random = seededRandom('recover-test');

interface Enrolled {
  name: string;
  id: IssuedIdentity;
  /** The SVID's key; the delegated CA's certificate (DER) and key. */
  svidKey: KeyObject;
  ca: Uint8Array;
  caKey: KeyObject;
}

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

async function enroll(name: string): Promise<Enrolled> {
  const token = await h.running.issuer.createJoinToken(name, 600_000);
  const b = (await h.call('POST', '/v1/attest/begin', { method: 'join-token', token }))
    .body as AttestBeginResponse;
  const ca = keyAndCsr();
  const svid = keyAndCsr();
  const fin = await h.call('POST', '/v1/attest/finish', {
    method: 'join-token',
    sessionId: b.sessionId,
    csr: svid.csr,
    caCsr: ca.csr,
  });
  assert.is(fin.status, 200, fin.text);
  const id = fin.body as IssuedIdentity;
  return { name, id, svidKey: svid.key, ca: id.deviceCaChain[0] as Uint8Array, caKey: ca.key };
}

async function begin(ca: Uint8Array) {
  return h.call('POST', '/v1/recover/begin', { caChain: [ca] });
}

/** A finish body: a fresh SVID key's CSR, signed over by `signer` (default: the CA key). */
function finishBody(b: RecoverBeginResponse, signer: KeyObject, over?: Buffer) {
  const k = keyAndCsr();
  const spki = parseCsr(k.csr).spki;
  const caSignature = sign('sha256', caPopSignedData(b.nonce, over ?? spki), {
    key: signer,
    dsaEncoding: 'der',
  });
  return { key: k.key, body: { sessionId: b.sessionId, csr: k.csr, caSignature } };
}

async function expectRefused(
  r: { status: number; body: unknown; text: string },
  status: number,
  code: string,
) {
  assert.is(r.status, status, r.text);
  assert.is(errorCode(r.body), code);
}

/** The issuer's own CA key, to forge certificates only an attacker with it could make. */
async function issuerSigner() {
  const key = await readPrivateKeyFile(join(h.dir, 'dev', 'ca.key'));
  return createSigner({
    certificate: h.running.caCertificate,
    privateKey: key,
    trustDomain: TD,
    random,
  });
}

test('an expired SVID with a valid delegated CA recovers by the CA key, with no person; the new SVID renews', async () => {
  const gw = await enroll('gw-rec');
  await h.clock.advance(2 * HOUR); // the SVID (1h) has expired; the CA (7d) has not
  const peer = { cert: gw.id.svidChain[0] as Uint8Array, key: gw.svidKey };
  await expectRefused(await h.call('POST', '/v1/renew/begin', {}, peer), 401, 'ERR_ISSUER_CLIENT_CERT');
  const b = await begin(gw.ca);
  assert.is(b.status, 200, b.text);
  const rb = b.body as RecoverBeginResponse;
  assert.is(rb.nonce.length, 32);
  assert.is(rb.pcrSelection, undefined);
  const f = finishBody(rb, gw.caKey);
  const fin = await h.call('POST', '/v1/recover/finish', f.body);
  assert.is(fin.status, 200, fin.text);
  const id = fin.body as IssuedIdentity;
  assert.is(id.spiffeId, `spiffe://${TD}/gateway/gw-rec`);
  assert.equal(id.deviceCaChain, [], 'no caCsr: the CA is kept');
  const svid = parseCertificate(id.svidChain[0] as Uint8Array);
  assert.ok(svid.notAfter > h.clock.now() + 50 * 60_000);
  assert.ok(new X509Certificate(Buffer.from(id.svidChain[0] as Uint8Array)).checkPrivateKey(f.key));
  // The recovered SVID is a normal one: mTLS renewal works with it.
  const renew = await h.call(
    'POST',
    '/v1/renew/begin',
    {},
    { cert: id.svidChain[0] as Uint8Array, key: f.key },
  );
  assert.is(renew.status, 200, renew.text);
  // Single use: the same finish again gets the same answer (a lost answer, finish-done.ts);
  // another request on the session (another CSR with its own proof) is a replay.
  const again = await h.call('POST', '/v1/recover/finish', f.body);
  assert.is(again.status, 200, again.text);
  assert.equal(
    Buffer.from((again.body as IssuedIdentity).svidChain[0] as Uint8Array),
    Buffer.from(id.svidChain[0] as Uint8Array),
  );
  await expectRefused(
    await h.call('POST', '/v1/recover/finish', finishBody(rb, gw.caKey).body),
    409,
    'ERR_ISSUER_SESSION_UNKNOWN',
  );
  const events = await h.running.issuer.auditEvents();
  assert.ok(events.some((e) => e.event === 'recover' && e.gateway === 'gw-rec' && e.method === 'join-token'));
  assert.is(events.filter((e) => e.event === 'recover' && e.gateway === 'gw-rec').length, 1);
  assert.ok(events.some((e) => e.event === 'retry' && e.gateway === 'gw-rec'));
  assert.ok(
    events.some(
      (e) => e.event === 'refuse' && e.code === 'ERR_ISSUER_SESSION_UNKNOWN' && e.detail === 'recover.finish',
    ),
  );
});

test('recovery with a caCsr issues a new delegated CA for the budget, recorded for the next recovery', async () => {
  const gw = await enroll('gw-newca');
  await h.clock.advance(2 * HOUR);
  const rb = (await begin(gw.ca)).body as RecoverBeginResponse;
  const f = finishBody(rb, gw.caKey);
  const newCa = keyAndCsr();
  const fin = await h.call('POST', '/v1/recover/finish', { ...f.body, caCsr: newCa.csr });
  assert.is(fin.status, 200, fin.text);
  const dca = parseCertificate((fin.body as IssuedIdentity).deviceCaChain[0] as Uint8Array);
  assert.ok(
    Math.abs(dca.notAfter - (h.clock.now() + 7 * DAY)) <= 1000,
    `default budget 7d: ${(dca.notAfter - h.clock.now()) / DAY}`,
  );
  // Both CAs are the gateway's: either key recovers.
  const again = await begin((fin.body as IssuedIdentity).deviceCaChain[0] as Uint8Array);
  assert.is(again.status, 200, again.text);
  const fin2 = await h.call(
    'POST',
    '/v1/recover/finish',
    finishBody(again.body as RecoverBeginResponse, newCa.key).body,
  );
  assert.is(fin2.status, 200, fin2.text);
});

test('a signature by another key, or over another CSR key, is ERR_ISSUER_POP_INVALID (401)', async () => {
  const gw = await enroll('gw-sig');
  const rb1 = (await begin(gw.ca)).body as RecoverBeginResponse;
  await expectRefused(
    await h.call('POST', '/v1/recover/finish', finishBody(rb1, keyAndCsr().key).body),
    401,
    'ERR_ISSUER_POP_INVALID',
  );
  const rb2 = (await begin(gw.ca)).body as RecoverBeginResponse;
  await expectRefused(
    await h.call('POST', '/v1/recover/finish', finishBody(rb2, gw.caKey, spkiOf(keyAndCsr().key)).body),
    401,
    'ERR_ISSUER_POP_INVALID',
  );
  const rb3 = (await begin(gw.ca)).body as RecoverBeginResponse;
  const f = finishBody(rb3, gw.caKey);
  await expectRefused(
    await h.call('POST', '/v1/recover/finish', { ...f.body, caSignature: Buffer.from('not a signature') }),
    401,
    'ERR_ISSUER_POP_INVALID',
  );
  // The session was consumed by the failed attempt: a correct proof on it is now a replay.
  await expectRefused(await h.call('POST', '/v1/recover/finish', f.body), 409, 'ERR_ISSUER_SESSION_UNKNOWN');
});

test('an expired delegated CA is ERR_ISSUER_CA_EXPIRED at begin, and at finish when it expires in between', async () => {
  const gw = await enroll('gw-exp');
  const ends = parseCertificate(gw.ca).notAfter;
  await h.clock.advance(ends - h.clock.now() - 60_000); // one minute before the CA's end
  const rb = (await begin(gw.ca)).body as RecoverBeginResponse;
  await h.clock.advance(2 * 60_000);
  await expectRefused(
    await h.call('POST', '/v1/recover/finish', finishBody(rb, gw.caKey).body),
    401,
    'ERR_ISSUER_CA_EXPIRED',
  );
  await expectRefused(await begin(gw.ca), 401, 'ERR_ISSUER_CA_EXPIRED');
});

test('a CA this issuer did not record, or recorded for another gateway, is ERR_ISSUER_CA_UNKNOWN (401)', async () => {
  const a = await enroll('gw-a');
  const b = await enroll('gw-b');
  const signer = await issuerSigner();
  const now = h.clock.now();
  // Signed by the issuer's CA key but never issued (not recorded): refused.
  const forged = signer.issue({
    profile: 'device-ca',
    spiffeId: `spiffe://${TD}/gateway/gw-a`,
    spki: spkiOf(a.caKey),
    notBefore: now,
    notAfter: now + DAY,
  });
  await expectRefused(await begin(forged.der), 401, 'ERR_ISSUER_CA_UNKNOWN');
  // gw-b's CA serial on a certificate naming gw-a: the serial is recorded for another gateway.
  const bSerial = parseCertificate(b.ca).serialHex;
  const swapped = signer.issue({
    profile: 'device-ca',
    spiffeId: `spiffe://${TD}/gateway/gw-a`,
    spki: spkiOf(b.caKey),
    notBefore: now,
    notAfter: now + DAY,
    serial: Buffer.from(bSerial.padStart(bSerial.length + (bSerial.length % 2), '0'), 'hex'),
  });
  assert.is(parseCertificate(swapped.der).serialHex, bSerial);
  const r = await begin(swapped.der);
  await expectRefused(r, 401, 'ERR_ISSUER_CA_UNKNOWN');
  assert.match((r.body as { error: { message: string } }).error.message, /another gateway/);
  // The gateway SVID is not a delegated CA.
  await expectRefused(await begin(a.id.svidChain[0] as Uint8Array), 401, 'ERR_ISSUER_CA_UNKNOWN');
  const rec = await h.running.issuer.auditEvents();
  assert.ok(
    rec.some(
      (e) => e.event === 'refuse' && e.code === 'ERR_ISSUER_CA_UNKNOWN' && e.detail === 'recover.begin',
    ),
  );
});

test('a CA that does not chain to this issuer is ERR_ISSUER_CHAIN_INVALID; malformed bodies are 400', async () => {
  const key = keyAndCsr().key;
  const other = createRootCa({
    trustDomain: TD,
    privateKey: key,
    notBefore: h.clock.now() - 1000,
    notAfter: h.clock.now() + DAY,
    random,
  });
  await expectRefused(await begin(other), 401, 'ERR_ISSUER_CHAIN_INVALID');
  await expectRefused(
    await h.call('POST', '/v1/recover/begin', { caChain: [] }),
    400,
    'ERR_ISSUER_BAD_REQUEST',
  );
  await expectRefused(
    await h.call('POST', '/v1/recover/begin', { caChain: [Buffer.from('junk')] }),
    401,
    'ERR_ISSUER_CHAIN_INVALID',
  );
  const gw = await enroll('gw-shape');
  const rb = (await begin(gw.ca)).body as RecoverBeginResponse;
  const { caSignature: _, ...noSig } = finishBody(rb, gw.caKey).body;
  await expectRefused(await h.call('POST', '/v1/recover/finish', noSig), 400, 'ERR_ISSUER_BAD_REQUEST');
});

test('a disabled gateway is refused (403) until enabled; a revoked one (ID or CA serial) is refused (403)', async () => {
  const gw = await enroll('gw-dis');
  await h.running.issuer.setDisabled('gw-dis', true);
  await expectRefused(await begin(gw.ca), 403, 'ERR_ISSUER_GATEWAY_DISABLED');
  await h.running.issuer.setDisabled('gw-dis', false);
  const rb = (await begin(gw.ca)).body as RecoverBeginResponse;
  // Disabled between begin and finish: finish checks again.
  await h.running.issuer.setDisabled('gw-dis', true);
  await expectRefused(
    await h.call('POST', '/v1/recover/finish', finishBody(rb, gw.caKey).body),
    403,
    'ERR_ISSUER_GATEWAY_DISABLED',
  );

  const rv = await enroll('gw-rev');
  await h.running.issuer.revoke('spiffe-id', `spiffe://${TD}/gateway/gw-rev`);
  // Revoking a gateway disables it, and 'disabled' is checked first (as at attestation); once
  // an operator enables it again, the revocation of its ID still refuses it.
  await expectRefused(await begin(rv.ca), 403, 'ERR_ISSUER_GATEWAY_DISABLED');
  await h.running.issuer.setDisabled('gw-rev', false);
  await expectRefused(await begin(rv.ca), 403, 'ERR_ISSUER_REVOKED');

  const rs = await enroll('gw-revserial');
  const rb2 = (await begin(rs.ca)).body as RecoverBeginResponse;
  await h.running.issuer.revoke('serial', parseCertificate(rs.ca).serialHex);
  await expectRefused(
    await h.call('POST', '/v1/recover/finish', finishBody(rb2, rs.caKey).body),
    403,
    'ERR_ISSUER_REVOKED',
  );
  await expectRefused(await begin(rs.ca), 403, 'ERR_ISSUER_REVOKED');
});

test('a renewal session cannot finish a recovery, nor an unknown one; an expired session is ERR_ISSUER_SESSION_EXPIRED', async () => {
  const gw = await enroll('gw-sess');
  const f = finishBody(
    { sessionId: gw.id.nextSessionId as string, nonce: gw.id.nextNonce, expiresAt: 0 },
    gw.caKey,
  );
  await expectRefused(await h.call('POST', '/v1/recover/finish', f.body), 409, 'ERR_ISSUER_SESSION_UNKNOWN');
  const rb = (await begin(gw.ca)).body as RecoverBeginResponse;
  await h.clock.advance(rb.expiresAt - h.clock.now() + 1);
  await expectRefused(
    await h.call('POST', '/v1/recover/finish', finishBody(rb, gw.caKey).body),
    409,
    'ERR_ISSUER_SESSION_EXPIRED',
  );
});

test('recovery is rate limited per gateway (429 with retryAfterMs)', async () => {
  const lh = await harness(
    { joinToken: { enabled: true } },
    { rateLimit: { perAddress: 100, perGateway: 3, windowMs: 60_000 } },
  );
  try {
    const token = await lh.running.issuer.createJoinToken('gw-rl', 600_000);
    const b = (await lh.call('POST', '/v1/attest/begin', { method: 'join-token', token }))
      .body as AttestBeginResponse;
    const ca = keyAndCsr();
    const fin = await lh.call('POST', '/v1/attest/finish', {
      method: 'join-token',
      sessionId: b.sessionId,
      csr: keyAndCsr().csr,
      caCsr: ca.csr,
    });
    const dca = (fin.body as IssuedIdentity).deviceCaChain[0] as Uint8Array;
    const codes: number[] = [];
    for (let i = 0; i < 3; i++)
      codes.push((await lh.call('POST', '/v1/recover/begin', { caChain: [dca] })).status);
    assert.equal(codes, [200, 200, 429], 'attest.finish took one of the 3');
    const r = await lh.call('POST', '/v1/recover/begin', { caChain: [dca] });
    assert.is(errorCode(r.body), 'ERR_ISSUER_RATE_LIMITED');
    assert.ok(((r.body as { error: { retryAfterMs: number } }).error.retryAfterMs ?? 0) > 0);
  } finally {
    await lh.running.close();
    rmSync(lh.dir, { recursive: true, force: true });
  }
});

test('the issuer records each delegated CA per gateway, and drops expired ones from the record', async () => {
  const gw = await enroll('gw-record');
  const first = parseCertificate(gw.ca).serialHex;
  const rec = async () =>
    ((await h.store.get<GatewayRecord>('gw/gw-record'))?.deviceCas ?? []).map((c) => c.serial);
  assert.equal(await rec(), [first]);
  const issued = await h.store.get<IssuedRecord>(`issued/${first}`);
  assert.equal({ kind: issued?.kind, gateway: issued?.gateway }, { kind: 'device-ca', gateway: 'gw-record' });
  // A recovery with a new CA adds it; once the first has expired, the next issuance drops it.
  await h.clock.advance(2 * HOUR);
  const rb = (await begin(gw.ca)).body as RecoverBeginResponse;
  const fin = await h.call('POST', '/v1/recover/finish', {
    ...finishBody(rb, gw.caKey).body,
    caCsr: keyAndCsr().csr,
  });
  const second = parseCertificate((fin.body as IssuedIdentity).deviceCaChain[0] as Uint8Array).serialHex;
  assert.equal(await rec(), [first, second]);
  await h.running.issuer.setOfflineBudget('gw-record', 8 * DAY);
  await h.clock.advance(7 * DAY - HOUR); // the first CA (7d from enrolment) has expired, the second not
  const rb2 = (await begin((fin.body as IssuedIdentity).deviceCaChain[0] as Uint8Array))
    .body as RecoverBeginResponse;
  assert.ok(rb2.sessionId);
  await expectRefused(await begin(gw.ca), 401, 'ERR_ISSUER_CA_EXPIRED');
});

test.run();
