/**
 * Idempotent attest finish (finish-done.ts): a finish whose answer was lost, sent again with the
 * same body, gets the same identity back (also from another replica), with one issuance and one
 * token consumption; another CSR on the same session is still a replay. On LevelDB (two issuers
 * on one store) and on PostgreSQL (two issuers, each its own pool, on one throw-away database).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AuditEvent, IssuedRecord } from '../../../runtime/issuer/records.ts';
import { stopTestCluster } from '../../helpers/postgres.ts';
import { rejects } from '../../helpers/rejects.ts';
import { keyAndCsr } from './harness.ts';
import { rigs } from './replica-pair.ts';

const ctx = { address: '10.0.0.7' };

for (const [name, make] of rigs) {
  test(`${name}: the same finish again (also on the other replica) answers the same identity, issued and consumed once; another CSR is a replay`, async () => {
    const r = await make();
    try {
      const token = await r.a.createJoinToken('gw-idem', 600_000);
      const b = await r.a.attestBegin({ method: 'join-token', token }, ctx);
      const finish = {
        method: 'join-token',
        sessionId: b.sessionId,
        csr: keyAndCsr().csr,
        caCsr: keyAndCsr().csr,
      };
      const first = await r.a.attestFinish(finish, ctx);
      const again = await r.a.attestFinish(finish, ctx);
      const other = await r.b.attestFinish({ ...finish }, ctx);
      for (const x of [again, other]) {
        assert.is(x.spiffeId, first.spiffeId);
        assert.equal(
          Buffer.from(x.svidChain[0] as Uint8Array),
          Buffer.from(first.svidChain[0] as Uint8Array),
        );
        assert.equal(
          Buffer.from(x.deviceCaChain[0] as Uint8Array),
          Buffer.from(first.deviceCaChain[0] as Uint8Array),
        );
        assert.is(x.nextSessionId, first.nextSessionId);
      }
      const issued = await r.store.list<IssuedRecord>('issued/');
      assert.equal(issued.map(([, v]) => v.kind).sort(), ['device-ca', 'svid']);
      const audit = (await r.store.list<AuditEvent>('audit/')).map(([, v]) => v);
      assert.is(audit.filter((e) => e.event === 'issue').length, 1);
      assert.is(audit.filter((e) => e.event === 'retry').length, 2);
      // The token was consumed once: a new begin with it is refused.
      await rejects(() => r.a.attestBegin({ method: 'join-token', token }, ctx), 'ERR_ISSUER_TOKEN_INVALID');
      // Another CSR (or CA CSR) on the same session: the usual replay refusal, on either replica.
      await rejects(
        () => r.b.attestFinish({ ...finish, csr: keyAndCsr().csr }, ctx),
        'ERR_ISSUER_SESSION_UNKNOWN',
      );
      await rejects(
        () => r.a.attestFinish({ ...finish, caCsr: keyAndCsr().csr }, ctx),
        'ERR_ISSUER_SESSION_UNKNOWN',
      );
      // The remembered answer goes with the session TTL: then the same finish is a replay too.
      await r.clock.advance(3_600_000);
      await rejects(() => r.a.attestFinish(finish, ctx), 'ERR_ISSUER_SESSION_UNKNOWN');
      await r.a.prune();
      assert.is((await r.store.list('done/')).length, 0);
    } finally {
      await r.close();
    }
  });

  test(`${name}: the same finish sent to both replicas at once: both get the one identity, issued once`, async () => {
    const r = await make();
    try {
      for (let i = 0; i < 5; i++) {
        const token = await r.a.createJoinToken(`gw-race-${i}`, 600_000);
        const b = await r.a.attestBegin({ method: 'join-token', token }, ctx);
        const finish = {
          method: 'join-token',
          sessionId: b.sessionId,
          csr: keyAndCsr().csr,
          caCsr: keyAndCsr().csr,
        };
        const [x, y] = await Promise.all([r.a.attestFinish(finish, ctx), r.b.attestFinish(finish, ctx)]);
        assert.equal(Buffer.from(x.svidChain[0] as Uint8Array), Buffer.from(y.svidChain[0] as Uint8Array));
      }
      const audit = (await r.store.list<AuditEvent>('audit/')).map(([, v]) => v);
      assert.is(audit.filter((e) => e.event === 'issue').length, 5);
      assert.is(audit.filter((e) => e.event === 'retry').length, 5);
      assert.is((await r.store.list('issued/')).length, 10);
    } finally {
      await r.close();
    }
  });

  test(`${name}: a malformed done record read back is no answer: the same finish again is the typed replay refusal, never a crash or a wrong identity`, async () => {
    const r = await make();
    try {
      const token = await r.a.createJoinToken('gw-bad-done', 600_000);
      const b = await r.a.attestBegin({ method: 'join-token', token }, ctx);
      const finish = {
        method: 'join-token',
        sessionId: b.sessionId,
        csr: keyAndCsr().csr,
        caCsr: keyAndCsr().csr,
      };
      await r.a.attestFinish(finish, ctx);
      const key = `done/${b.sessionId}`;
      const good = (await r.store.get<Record<string, unknown>>(key)) as Record<string, unknown>;
      const response = good.response as Record<string, unknown>;
      for (const bad of [
        'not a record',
        { ...good, response: null },
        { ...good, response: { ...response, svidChain: 'x' } },
        { ...good, response: { ...response, spiffeId: 7 } },
        { ...good, expiresAt: 'later' },
      ]) {
        await r.store.batch([{ type: 'put', key, value: bad }]);
        await rejects(() => r.b.attestFinish(finish, ctx), 'ERR_ISSUER_SESSION_UNKNOWN');
      }
      // The well-formed record is answered again, as before.
      await r.store.batch([{ type: 'put', key, value: good }]);
      assert.is((await r.a.attestFinish(finish, ctx)).spiffeId, response.spiffeId);
      // Prune drops a malformed one as if expired (it could never answer), and keeps a good one.
      await r.store.batch([
        { type: 'put', key: 'done/bad-1', value: 'not a record' },
        { type: 'put', key: 'done/bad-2', value: null },
        { type: 'put', key: 'done/bad-3', value: { ...good, expiresAt: 'later' } },
      ]);
      await r.a.prune();
      assert.equal(
        (await r.store.list('done/')).map(([k]) => k),
        [key],
      );
    } finally {
      await r.close();
    }
  });
}

test.after(() => stopTestCluster());
test.run();
