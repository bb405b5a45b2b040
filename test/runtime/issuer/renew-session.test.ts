/**
 * The renewal hot path on two replicas sharing one PostgreSQL database (issue 17): sessions are
 * consumed inside the issuance transaction (racers on one session: exactly one issues; a refused
 * attempt still uses its session up, so a failed proof is never retried with the same nonce), and
 * a request with a gateway SVID is rate limited under that gateway, not under its address.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isEdgewardError } from '../../../runtime/core/error.ts';
import type { Issuer } from '../../../runtime/issuer/issuer.ts';
import type { IssuedRecord } from '../../../runtime/issuer/records.ts';
import { stopTestCluster } from '../../helpers/postgres.ts';
import { rejects } from '../../helpers/rejects.ts';
import { keyAndCsr } from './harness.ts';
import { postgresPair } from './replica-pair.ts';

const codeOf = (e: unknown): string => (isEdgewardError(e) ? e.code : String(e));

async function enroll(on: Issuer, name: string, address = '10.0.0.1') {
  const ctx = { address };
  const token = await on.createJoinToken(name, 600_000);
  const b = await on.attestBegin({ method: 'join-token', token }, ctx);
  const id = await on.attestFinish(
    { method: 'join-token', sessionId: b.sessionId, csr: keyAndCsr().csr, caCsr: keyAndCsr().csr },
    ctx,
  );
  return { id, peer: { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array } };
}

test.after(() => stopTestCluster());

test('one renewal session raced by 4 attempts over 2 replicas: exactly one issues, the rest are replays', async () => {
  const f = await postgresPair('renew-race');
  try {
    for (let g = 0; g < 12; g++) {
      const name = `gw-r${g}`;
      const { id, peer } = await enroll(f.a, name);
      const session = id.nextSessionId as string;
      const outcomes = await Promise.all(
        [0, 1, 2, 3].map((i) =>
          (i % 2 === 0 ? f.a : f.b).renewFinish({ sessionId: session, csr: keyAndCsr().csr }, peer).then(
            (r) => `issued ${r.nextSessionId}`,
            (e: unknown) => codeOf(e),
          ),
        ),
      );
      const issued = outcomes.filter((o) => o.startsWith('issued'));
      assert.is(issued.length, 1, `${name}: ${outcomes.join(', ')}`);
      for (const o of outcomes.filter((x) => !x.startsWith('issued')))
        assert.is(o, 'ERR_ISSUER_SESSION_UNKNOWN', name);
      // The session is gone, the next one is stored, and exactly two SVIDs exist (enroll + renewal).
      assert.is(await f.store.get(`session/${session}`), undefined);
      const next = (issued[0] as string).slice('issued '.length);
      assert.ok(await f.store.get(`session/${next}`), `${name}: next session stored`);
      const svids = (await f.store.list<IssuedRecord>('issued/')).filter(
        ([, v]) => v.gateway === name && v.kind === 'svid',
      );
      assert.is(svids.length, 2, name);
    }
  } finally {
    await f.close();
  }
});

test('a refused renewal uses its session up: the same session with a good CSR is then a replay', async () => {
  const f = await postgresPair('renew-refused');
  try {
    const { id, peer } = await enroll(f.a, 'gw-refused');
    const session = id.nextSessionId as string;
    await rejects(
      () => f.a.renewFinish({ sessionId: session, csr: Buffer.from('not a CSR') }, peer),
      'ERR_CSR_MALFORMED',
    );
    assert.is(await f.store.get(`session/${session}`), undefined, 'deleted by the refusal');
    await rejects(
      () => f.b.renewFinish({ sessionId: session, csr: keyAndCsr().csr }, peer),
      'ERR_ISSUER_SESSION_UNKNOWN',
    );
    // A fresh session from renew/begin still works.
    const rb = await f.b.renewBegin(peer);
    const r = await f.a.renewFinish({ sessionId: rb.sessionId, csr: keyAndCsr().csr }, peer);
    assert.is(r.spiffeId, id.spiffeId);
  } finally {
    await f.close();
  }
});

test('mTLS requests count against the gateway, once, not its (shared) address; others against the address', async () => {
  const f = await postgresPair('renew-limits', { perAddress: 2, perGateway: 4, windowMs: 60_000 });
  try {
    const nat = '10.9.9.9';
    const gws = [await enroll(f.a, 'gw-nat-a', '10.1.0.1'), await enroll(f.b, 'gw-nat-b', '10.1.0.2')];
    for (const g of gws) {
      let session = g.id.nextSessionId as string;
      const key = keyAndCsr();
      let peer = { address: nat, peerCertificate: g.id.svidChain[0] as Uint8Array };
      for (let i = 0; i < 3; i++) {
        const r = await (i % 2 === 0 ? f.a : f.b).renewFinish({ sessionId: session, csr: key.csr }, peer);
        session = r.nextSessionId as string;
        peer = { address: nat, peerCertificate: r.svidChain[0] as Uint8Array };
      }
      // The attestation counted once for the gateway too: 1 + 3 = its 4; the 5th is refused.
      const over = await rejects(() => f.a.renewBegin(peer), 'ERR_ISSUER_RATE_LIMITED');
      assert.match(over.message, /for gateway gw-nat-/);
    }
    // Six renewals from the one address did not use its budget: requests without an SVID still get 2.
    const ask = () =>
      f.b.attestBegin({ method: 'join-token', token: 'not-a-token' }, { address: nat }).then(
        () => 'ok',
        (e: unknown) => codeOf(e),
      );
    assert.equal(
      [await ask(), await ask(), await ask()],
      ['ERR_ISSUER_TOKEN_INVALID', 'ERR_ISSUER_TOKEN_INVALID', 'ERR_ISSUER_RATE_LIMITED'],
    );
    // A certificate this issuer did not sign counts against the address (now over), whatever it names.
    const forged = { address: nat, peerCertificate: Buffer.from('not a certificate') };
    await rejects(() => f.a.renewBegin(forged), 'ERR_ISSUER_RATE_LIMITED');
  } finally {
    await f.close();
  }
});

test.run();
