/**
 * A lost renew (or recover) finish answer: the issuer commits the renewal (consuming its session) and
 * the replica dies before its answer is written (its connections cut right after the COMMIT, as
 * in lost-attest-answer.test.ts). The agent sends the very same finish again (exchange.ts
 * `PendingFinish`: same session, same CSR, same client SVID), on the next endpoint or, with one
 * URL behind a load balancer, on the same URL; the issuer answers it from `done/<sessionId>`
 * (runtime/issuer/finish-done.ts). The agent ends renewed with one renewal issued, one renew
 * begin (no new begin, so a TPM gateway would need no fresh quote), no fallback to recovery and
 * no re-attestation. Likewise a gateway whose SVID expired offline and whose recover answer is
 * lost: recovered with one recovery and one recover begin.
 */
import type { X509Certificate } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AuditEvent } from '../../../runtime/issuer/records.ts';
import { parseCertificate } from '../../../runtime/svid/certificate.ts';
import { PATHS } from '../../../runtime/upstream/protocol.ts';
import type { Upstream } from '../../../runtime/upstream/types.ts';
import { dyingReplicas, TD } from './helpers/dying-replicas.ts';
import { HOUR, harness } from './helpers/harness.ts';

/** `real` with every POST's path noted in `paths`. */
function counted(real: Upstream, paths: string[]): Upstream {
  return {
    endpoints: real.endpoints.map((ep) => ({
      url: ep.url,
      post: (p, body, o) => {
        paths.push(p);
        return ep.post(p, body, o);
      },
      get: (p, o) => ep.get(p, o),
    })),
    close: () => real.close(),
  };
}

async function scenario(single: boolean, way: 'renew' | 'recover') {
  const r = await dyingReplicas('lost-renew-', { single, diesAt: { prefix: 'issued/', commit: 'after' } });
  const { clock, shared, a, b, attestor, seen } = r;
  const h = await harness({}, { startAgent: false });
  const paths: string[] = [];
  const upstream = counted(r.upstream, paths);
  const start = () =>
    h.restart({ clock, trustDomain: TD, attestor, upstream, breaker: { failures: 1, openMs: 24 * HOUR } });
  let agent = await start();
  try {
    const enrolled = new Promise<void>((resolve) => agent.svidSource.onChange(() => resolve()));
    await h.clock.advance(0);
    await enrolled;
    const before = parseCertificate(
      (agent.svidSource.getX509Svid().chain[0] as X509Certificate).raw,
    ).serialHex;
    // The renewal (or recovery): replica A commits it and dies before answering.
    if (way === 'renew') {
      r.arm();
      await agent.rotateNow();
    } else {
      // Off for longer than the SVID (1 h), not the delegated CA (7 d): back, it recovers at once.
      await agent.stop();
      await clock.advance(2 * HOUR);
      r.arm();
      agent = await start();
      const recovered = new Promise<void>((resolve) => agent.svidSource.onChange(() => resolve()));
      await h.clock.advance(0);
      await recovered;
    }
    assert.equal(seen, ['A died after its COMMIT']);
    const events = h.logger.lines.map((l) => l.fields.event);
    const rotated = h.logger.lines
      .filter((l) => l.fields.event === 'identity.rotated')
      .map((l) => l.fields.via);
    assert.equal(
      rotated,
      ['attest', way],
      `${way === 'renew' ? 'renewed' : 'recovered'}, not attested again`,
    );
    for (const e of ['identity.retry', 'identity.refused', 'identity.halted'])
      assert.not.ok(events.includes(e), `no ${e}`);
    const after = parseCertificate(
      (agent.svidSource.getX509Svid().chain[0] as X509Certificate).raw,
    ).serialHex;
    assert.is.not(after, before, 'a new SVID is served');
    assert.is(agent.status().upstream.endpoint, single ? a.url : b.url);
    // One begin, the same finish twice (the second answered from done/).
    const n = (p: string) => paths.filter((x) => x === p).length;
    const other = way === 'renew' ? 'recover' : 'renew';
    assert.is(n(PATHS.attestBegin), 1, 'attested once');
    assert.is(n(PATHS[`${way}Begin`]), 1, `no new ${way} begin`);
    assert.is(n(PATHS[`${way}Finish`]), 2, 'the finish sent again');
    assert.is(n(PATHS[`${other}Begin`]), 0, `no ${other}`);
    const audit = (await shared.list<AuditEvent>('audit/')).map(([, v]) => v);
    const count = (e: string) => audit.filter((x) => x.event === e).length;
    assert.is(count('issue'), 1, 'issued once');
    assert.is(count(way), 1, `${way} issued once`);
    assert.is(count(other), 0);
    assert.is(count('retry'), 1, 'answered again once');
    assert.is(count('refuse'), 0);
    const issued = audit.find((x) => x.event === way);
    assert.equal(issued?.serials, [after], `the SVID served is the one the ${way} issued`);
    // Recovery: the attestation's SVID expired and was pruned meanwhile.
    assert.is(
      (await shared.list('issued/')).length,
      way === 'renew' ? 3 : 2,
      `the delegated CA, the attestation's SVID while valid, one SVID by ${way}`,
    );
  } finally {
    await agent.stop();
    await r.close();
  }
}

test('the renew finish answer lost when replica A dies after its COMMIT: the same finish on B renews, one issuance', () =>
  scenario(false, 'renew'));

test('one URL: the connection reset after the COMMIT, the same renew finish again on the same URL renews', () =>
  scenario(true, 'renew'));

test('the recover finish answer lost when replica A dies after its COMMIT: the same finish on B recovers, one issuance', () =>
  scenario(false, 'recover'));

test('one URL: the recover answer cut after the COMMIT, the same recover finish again on the same URL recovers', () =>
  scenario(true, 'recover'));

test.run();
