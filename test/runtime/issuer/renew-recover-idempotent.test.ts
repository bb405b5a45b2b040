/**
 * Idempotent renew and recover finishes (finish-done.ts, as for attest): a finish whose answer
 * was lost, sent again with the same body (also to the other replica, also to both at once),
 * gets the same identity back, issued once and audited as `retry`; another request on the same
 * session (another CSR, another CA CSR, none) is still the replay refusal, and a renewal's
 * remembered answer is never given to another gateway's SVID. On LevelDB and PostgreSQL.
 */
import { type KeyObject, sign } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Issuer } from '../../../runtime/issuer/issuer.ts';
import type { AuditEvent, IssuedRecord } from '../../../runtime/issuer/records.ts';
import { parseCsr } from '../../../runtime/svid/csr.ts';
import { caPopSignedData } from '../../../runtime/svid/pop.ts';
import type { IssuedIdentity } from '../../../runtime/upstream/protocol.ts';
import { stopTestCluster } from '../../helpers/postgres.ts';
import { rejects } from '../../helpers/rejects.ts';
import { keyAndCsr } from './harness.ts';
import { type Rig, rigs } from './replica-pair.ts';

const ctx = { address: '10.0.0.7' };
const HOUR = 3_600_000;

interface Enrolled {
  id: IssuedIdentity;
  /** The request context with the gateway SVID as TLS client certificate. */
  peer: { address: string; peerCertificate: Uint8Array };
  ca: Uint8Array;
  caKey: KeyObject;
}

async function enroll(on: Issuer, name: string): Promise<Enrolled> {
  const token = await on.createJoinToken(name, 600_000);
  const b = await on.attestBegin({ method: 'join-token', token }, ctx);
  const ca = keyAndCsr();
  const id = await on.attestFinish(
    { method: 'join-token', sessionId: b.sessionId, csr: keyAndCsr().csr, caCsr: ca.csr },
    ctx,
  );
  return {
    id,
    peer: { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array },
    ca: id.deviceCaChain[0] as Uint8Array,
    caKey: ca.key,
  };
}

/** A recover finish body for session `b`: a fresh CSR, signed over by the CA key. */
function recoverBody(b: { sessionId: string; nonce: Uint8Array }, caKey: KeyObject) {
  const csr = keyAndCsr().csr;
  const caSignature = sign('sha256', caPopSignedData(b.nonce, parseCsr(csr).spki), {
    key: caKey,
    dsaEncoding: 'der',
  });
  return { sessionId: b.sessionId, csr, caSignature };
}

const der = (x: IssuedIdentity, which: 'svidChain' | 'deviceCaChain'): Buffer | undefined => {
  const c = x[which][0];
  return c === undefined ? undefined : Buffer.from(c);
};

function sameIdentity(x: IssuedIdentity, first: IssuedIdentity): void {
  assert.is(x.spiffeId, first.spiffeId);
  assert.equal(der(x, 'svidChain'), der(first, 'svidChain'));
  assert.equal(der(x, 'deviceCaChain'), der(first, 'deviceCaChain'));
  assert.is(x.nextSessionId, first.nextSessionId);
  assert.equal(Buffer.from(x.nextNonce ?? []), Buffer.from(first.nextNonce ?? []));
}

async function events(r: Rig, kind: AuditEvent['event']): Promise<AuditEvent[]> {
  return (await r.store.list<AuditEvent>('audit/')).map(([, v]) => v).filter((e) => e.event === kind);
}

for (const [name, make] of rigs) {
  test(`${name}: the same renew finish again (also on the other replica) answers the same identity, issued once; another request on the session is a replay`, async () => {
    const r = await make();
    try {
      const gw = await enroll(r.a, 'gw-renew');
      const other = await enroll(r.a, 'gw-other');
      const finish = {
        sessionId: gw.id.nextSessionId as string,
        csr: keyAndCsr().csr,
        caCsr: keyAndCsr().csr,
      };
      const first = await r.a.renewFinish(finish, gw.peer);
      assert.is((first.deviceCaChain ?? []).length, 1);
      sameIdentity(await r.a.renewFinish(finish, gw.peer), first);
      sameIdentity(await r.b.renewFinish({ ...finish }, gw.peer), first);
      assert.is((await events(r, 'renew')).length, 1, 'renewed once');
      const retries = await events(r, 'retry');
      assert.is(retries.length, 2);
      assert.ok(
        retries.every((e) => e.gateway === 'gw-renew' && /^renew finish answered again/.test(e.detail ?? '')),
      );
      const issued = (await r.store.list<IssuedRecord>('issued/')).filter(
        ([, v]) => v.gateway === 'gw-renew',
      );
      assert.is(issued.length, 4, 'attestation and one renewal: two SVIDs, two delegated CAs');
      // Another CSR, another CA CSR, no CA CSR: the usual replay refusal, on either replica.
      await rejects(
        () => r.b.renewFinish({ ...finish, csr: keyAndCsr().csr }, gw.peer),
        'ERR_ISSUER_SESSION_UNKNOWN',
      );
      await rejects(
        () => r.a.renewFinish({ ...finish, caCsr: keyAndCsr().csr }, gw.peer),
        'ERR_ISSUER_SESSION_UNKNOWN',
      );
      await rejects(
        () => r.a.renewFinish({ sessionId: finish.sessionId, csr: finish.csr }, gw.peer),
        'ERR_ISSUER_SESSION_UNKNOWN',
      );
      // The very same body with another gateway's SVID: never answered with this gateway's identity.
      await rejects(() => r.b.renewFinish(finish, other.peer), 'ERR_ISSUER_SESSION_UNKNOWN');
      // The remembered answer goes with the session TTL (5 min): then the same finish is a replay too.
      await r.clock.advance(6 * 60_000);
      await rejects(() => r.a.renewFinish(finish, gw.peer), 'ERR_ISSUER_SESSION_UNKNOWN');
      assert.is((await events(r, 'renew')).length, 1);
      assert.is((await events(r, 'retry')).length, 2);
    } finally {
      await r.close();
    }
  });

  test(`${name}: the same renew finish and the same recover finish sent to both replicas at once: one issuance each, the same answer`, async () => {
    const r = await make();
    try {
      const gws: Enrolled[] = [];
      for (let i = 0; i < 4; i++) gws.push(await enroll(r.a, `gw-race-${i}`));
      for (const gw of gws) {
        const finish = { sessionId: gw.id.nextSessionId as string, csr: keyAndCsr().csr };
        const [x, y] = await Promise.all([
          r.a.renewFinish(finish, gw.peer),
          r.b.renewFinish(finish, gw.peer),
        ]);
        sameIdentity(y, x);
      }
      assert.is((await events(r, 'renew')).length, 4);
      assert.is((await events(r, 'retry')).length, 4);
      // Recovery: the SVIDs have expired, the delegated CAs (7 d) have not.
      await r.clock.advance(2 * HOUR);
      for (const gw of gws) {
        const b = await r.b.recoverBegin({ caChain: [gw.ca] }, ctx);
        const finish = { ...recoverBody(b, gw.caKey), caCsr: keyAndCsr().csr };
        const [x, y] = await Promise.all([r.a.recoverFinish(finish, ctx), r.b.recoverFinish(finish, ctx)]);
        sameIdentity(y, x);
      }
      assert.is((await events(r, 'recover')).length, 4);
      assert.is((await events(r, 'retry')).length, 8);
      // Per gateway: attestation, renewal (no CA) and recovery (new CA): 3 SVIDs and 2 CAs.
      assert.is((await r.store.list('issued/')).length, 4 * 5);
    } finally {
      await r.close();
    }
  });

  test(`${name}: the same recover finish again (also on the other replica) answers the same identity, issued once; another request on the session is a replay`, async () => {
    const r = await make();
    try {
      const gw = await enroll(r.a, 'gw-recover');
      await r.clock.advance(2 * HOUR);
      const b = await r.a.recoverBegin({ caChain: [gw.ca] }, ctx);
      const finish = recoverBody(b, gw.caKey);
      const first = await r.a.recoverFinish(finish, ctx);
      assert.equal(first.deviceCaChain, [], 'no caCsr: the CA is kept');
      sameIdentity(await r.a.recoverFinish(finish, ctx), first);
      sameIdentity(await r.b.recoverFinish({ ...finish }, ctx), first);
      assert.is((await events(r, 'recover')).length, 1, 'recovered once');
      const retries = await events(r, 'retry');
      assert.is(retries.length, 2);
      assert.ok(
        retries.every((e) => e.gateway === 'gw-recover' && /^recover finish answered/.test(e.detail ?? '')),
      );
      // Another CSR with its own good proof, or a CA CSR added: the usual replay refusal.
      await rejects(() => r.b.recoverFinish(recoverBody(b, gw.caKey), ctx), 'ERR_ISSUER_SESSION_UNKNOWN');
      await rejects(
        () => r.a.recoverFinish({ ...finish, caCsr: keyAndCsr().csr }, ctx),
        'ERR_ISSUER_SESSION_UNKNOWN',
      );
      assert.is((await events(r, 'retry')).length, 2);
    } finally {
      await r.close();
    }
  });
}

test.after(() => stopTestCluster());
test.run();
