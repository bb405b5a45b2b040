import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fullJitterBackoff, refreshAt } from '../../../runtime/agent/policy.ts';
import { seededRandom } from '../../../sim/random.ts';
import { rejects } from '../../helpers/rejects.ts';
import { HOUR, harness, MIN } from './helpers/harness.ts';

test('rotation lands at half-life ±10 % (45–55 % of the lifetime) and jitter spreads it', () => {
  const r = seededRandom('jitter');
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const at = refreshAt(0, HOUR, r);
    assert.ok(at >= 0.45 * HOUR && at <= 0.55 * HOUR, `at ${at}`);
    seen.add(Math.round(at / 1000));
  }
  assert.ok(seen.size > 300, 'jitter is spread');
  const lo = Math.min(...[...seen]);
  const hi = Math.max(...[...seen]);
  assert.ok(lo < 0.46 * 3600 && hi > 0.54 * 3600, `range ${lo}..${hi}`);
});

test('full-jitter backoff: each delay is uniform in [0, min(cap, initial·factorⁿ)]', () => {
  const b = fullJitterBackoff({ initialMs: 1000, factor: 2, capMs: 30_000 }, seededRandom('b'));
  for (let n = 0; n < 12; n++) {
    const ceiling = Math.min(30_000, 1000 * 2 ** n);
    let max = 0;
    for (let i = 0; i < 300; i++) {
      const d = b.delay(n);
      assert.ok(d >= 0 && d < ceiling, `attempt ${n}: ${d}`);
      max = Math.max(max, d);
    }
    assert.ok(max > ceiling * 0.8, `attempt ${n} reaches near its ceiling`);
  }
  assert.throws(
    () => fullJitterBackoff({ initialMs: 0, factor: 2, capMs: 1 }, seededRandom('x')),
    (err: unknown) => err instanceof TypeError,
  );
});

/**
 * The rotation suite, run twice: against the FakeIssuer, and against the real issuer in process
 * behind the same endpoints (issue 16: a fake that drifted from the issuer's codes went unnoticed).
 */
function suite(real: boolean): void {
  const it = (name: string, fn: () => Promise<void>): void => test(real ? `${name} [real issuer]` : name, fn);
  const make = (extra: Parameters<typeof harness>[0] = {}, o: Parameters<typeof harness>[1] = {}) =>
    harness(extra, { ...o, real });

  it('first boot attests, serves the SVID and the bundle, and logs one event without key material', async () => {
    const h = await make();
    assert.is(h.issuer.count('/v1/attest/finish'), 0, 'start() does not wait for the upstream');
    let changes = 0;
    h.agent.svidSource.onChange(() => changes++);
    await h.clock.advance(0);
    const svid = h.agent.svidSource.getX509Svid();
    assert.is(svid.spiffeId, 'spiffe://fleet.example/gateway/gw-1');
    assert.is(svid.notAfter, h.clock.now() + HOUR);
    assert.is(changes, 1);
    const roots = h.agent.bundleSource.getBundleFor('fleet.example').roots;
    assert.is(roots.length, 1);
    assert.is(roots[0]?.raw.equals(h.issuer.rootDer), !real, 'the bundle is the answering issuer’s');
    await rejects(() => h.agent.bundleSource.getBundleFor('other.example'), 'ERR_BUNDLE_UNAVAILABLE');
    const ev = h.logger.lines.filter((l) => l.fields.event === 'identity.rotated');
    assert.is(ev.length, 1);
    assert.is(ev[0]?.fields.via, 'attest');
    const text = JSON.stringify(h.logger.lines);
    assert.not.match(text, /PRIVATE KEY|svidKey|caKey/);
    await h.agent.stop();
  });

  it('the agent renews over mTLS inside the jitter window, and again for the next SVID', async () => {
    const h = await make();
    await h.clock.advance(0);
    const t0 = h.clock.now();
    const first = h.agent.svidSource.getX509Svid();
    await h.clock.advance(0.45 * HOUR - 1000);
    assert.is(h.issuer.count('/v1/renew/finish'), 0, 'not before 45 %');
    await h.clock.advance(0.1 * HOUR + 2000);
    assert.is(h.issuer.count('/v1/renew/finish'), 1, 'by 55 %');
    const renew = h.issuer.calls.find((c) => c.path === '/v1/renew/begin');
    assert.is(renew?.clientId, first.spiffeId, 'renewal authenticated with the current SVID');
    const second = h.agent.svidSource.getX509Svid();
    assert.is.not(second, first);
    assert.ok(second.notAfter > first.notAfter);
    const at = (h.issuer.calls.find((c) => c.path === '/v1/renew/finish')?.at ?? 0) - t0;
    assert.ok(at >= 0.45 * HOUR && at <= 0.55 * HOUR + 1000, `renewed at ${at}`);
    // The second SVID renews between 0.9 h and 1.1 h after boot; the third not before 1.35 h.
    await h.clock.advance(0.57 * HOUR);
    assert.is(h.issuer.count('/v1/renew/finish'), 2);
    assert.is(h.issuer.count('/v1/attest/finish'), 1);
    await h.agent.stop();
  });

  it('while the issuer is down the agent retries with capped backoff and keeps serving', async () => {
    const delays: number[] = [];
    const h = await make(
      {
        backoff: {
          delay: (n) => {
            const d = Math.min(60_000, 1000 * 2 ** n);
            delays.push(d);
            return d;
          },
        },
        breaker: { failures: 100, openMs: MIN },
      },
      { startAgent: false },
    );
    h.issuer.faults.set('*', 'down');
    await h.restart();
    await h.clock.advance(10 * MIN);
    const attempts = h.issuer.count('/v1/attest/begin');
    // 0, 1, 3, 7, 15, 31, 63 (s), then every 60 s: about 15 attempts in 10 min.
    assert.ok(attempts >= 12 && attempts <= 18, `attempts ${attempts}`);
    assert.equal(delays.slice(0, 8), [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
    await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
    assert.is(h.agent.status().upstream.state, 'failing');
    h.issuer.faults.clear();
    await h.clock.advance(MIN);
    assert.is(h.agent.svidSource.getX509Svid().spiffeId, 'spiffe://fleet.example/gateway/gw-1');
    assert.is(h.agent.status().upstream.state, 'ok');
    assert.is(h.agent.status().upstream.consecutiveFailures, 0);
    await h.agent.stop();
  });

  it('failover: a dead endpoint is skipped within the same attempt, and the good one is tried first next time', async () => {
    const urls = ['https://a.test', 'https://b.test', 'https://c.test'];
    const h = await make({}, { urls, startAgent: false });
    h.issuer.faults.set('https://a.test', 'down');
    h.issuer.faults.set('https://b.test', '503');
    await h.restart();
    await h.clock.advance(0);
    assert.ok(h.agent.svidSource.getX509Svid());
    assert.is(h.issuer.count('/v1/attest/begin', 'https://a.test'), 1);
    assert.is(h.issuer.count('/v1/attest/begin', 'https://b.test'), 1);
    assert.is(h.issuer.count('/v1/attest/finish', 'https://c.test'), 1);
    assert.is(h.agent.status().upstream.endpoint, 'https://c.test');
    assert.is(h.logger.lines.filter((l) => l.fields.event === 'upstream.failover').length, 2);
    await h.clock.advance(0.6 * HOUR);
    assert.is(
      h.issuer.count('/v1/renew/begin', 'https://a.test'),
      0,
      'renewal goes to the endpoint that worked',
    );
    assert.is(h.issuer.count('/v1/renew/finish', 'https://c.test'), 1);
    // An issuer answer that is not an identity for our keys fails over too, and nothing is adopted.
    h.issuer.faults.clear();
    h.issuer.faults.set('https://c.test', 'garbage');
    const before = h.agent.svidSource.getX509Svid();
    await h.agent.rotateNow();
    assert.is.not(h.agent.svidSource.getX509Svid(), before);
    assert.is(h.issuer.count('/v1/renew/finish', 'https://a.test'), 1);
    await h.agent.stop();
  });

  it('circuit breaker: after N failures no call is made until it half-opens; one trial then', async () => {
    const h = await make(
      { backoff: { delay: () => 1000 }, breaker: { failures: 3, openMs: 10 * MIN } },
      { startAgent: false },
    );
    h.issuer.faults.set('*', '503');
    await h.restart();
    await h.clock.advance(5000);
    assert.is(h.issuer.count('/v1/attest/begin'), 3);
    assert.is(h.agent.status().breaker.state, 'open');
    await h.clock.advance(10 * MIN - 10_000);
    assert.is(h.issuer.count('/v1/attest/begin'), 3, 'no call while open');
    await h.clock.advance(10_000);
    assert.is(h.issuer.count('/v1/attest/begin'), 4, 'one trial when half-open');
    assert.is(h.agent.status().breaker.state, 'open', 'a failed trial opens it again');
    h.issuer.faults.clear();
    await h.clock.advance(10 * MIN);
    assert.is(h.agent.status().breaker.state, 'closed');
    assert.ok(h.agent.svidSource.getX509Svid());
    await h.agent.stop();
  });

  it('429 with retryAfterMs is honoured over a shorter backoff', async () => {
    const h = await make({ backoff: { delay: () => 1000 } }, { startAgent: false });
    h.issuer.faults.set('*', '429');
    await h.restart();
    await h.clock.advance(60_000);
    assert.is(h.issuer.count('/v1/attest/begin'), 1);
    await h.clock.advance(61_000);
    assert.is(h.issuer.count('/v1/attest/begin'), 2);
    await h.agent.stop();
  });

  it('a curable refusal tries the next way at once (renew → recover → attest), then backs off, never halts', async () => {
    const h = await make({ backoff: { delay: () => 1000 }, breaker: { failures: 100, openMs: MIN } });
    await h.clock.advance(0);
    for (const path of ['/v1/renew', '/v1/recover', '/v1/attest'])
      h.issuer.refusals.set(path, 'ERR_ISSUER_PCR_MISMATCH');
    await h.clock.advance(0.56 * HOUR);
    const refused = h.logger.lines.filter((l) => l.fields.event === 'identity.refused');
    assert.equal(
      refused.slice(0, 3).map((l) => [l.fields.via, l.fields.remoteCode, l.fields.next]),
      [
        ['renew', 'ERR_ISSUER_PCR_MISMATCH', 'recover'],
        ['recover', 'ERR_ISSUER_PCR_MISMATCH', 'attest'],
        ['attest', 'ERR_ISSUER_PCR_MISMATCH', 'retry'],
      ],
    );
    const s = h.agent.status();
    assert.is(s.upstream.state, 'failing', 'a curable refusal is not a halt');
    assert.is(s.upstream.lastError?.code, 'ERR_UPSTREAM_REFUSED');
    assert.is(s.upstream.lastError?.remoteCode, 'ERR_ISSUER_PCR_MISMATCH');
    assert.not.ok(h.logger.lines.some((l) => l.fields.event === 'identity.halted'));
    // 100 refused rounds opened the breaker (1 min): refusals wait it out, no faster retry.
    assert.is(h.agent.status().breaker.state, 'open');
    // The cause is cured (a manifest published): the next trial, within the open period, succeeds.
    h.issuer.refusals.clear();
    const before = h.issuer.count('/v1/renew/finish');
    await h.clock.advance(MIN + 5000);
    assert.is(h.issuer.count('/v1/renew/finish'), before + 1);
    assert.is(h.agent.status().upstream.state, 'ok');
    await h.agent.stop();
  });

  it('a definitive refusal (revoked) stops the agent with one log line and the code in the status', async () => {
    const h = await make({ backoff: { delay: () => 1000 } });
    await h.clock.advance(0);
    h.issuer.refusals.set('/v1/', 'ERR_ISSUER_REVOKED');
    await h.clock.advance(0.56 * HOUR);
    assert.is(h.issuer.count('/v1/renew/begin'), 1, 'renewal tried once');
    assert.is(h.issuer.count('/v1/recover'), 0, 'no other way tried: no retry can cure it');
    const halted = h.logger.lines.filter((l) => l.fields.event === 'identity.halted');
    assert.equal(
      halted.map((l) => [l.level, l.fields.via, l.fields.remoteCode]),
      [['error', 'renew', 'ERR_ISSUER_REVOKED']],
    );
    const s = h.agent.status();
    assert.is(s.upstream.state, 'refused');
    assert.is(s.upstream.lastError?.remoteCode, 'ERR_ISSUER_REVOKED');
    assert.is(s.upstream.lastError?.code, 'ERR_UPSTREAM_REFUSED');
    assert.is(s.nextRotation, undefined);
    const exchanges = (): number =>
      h.issuer.calls.filter((c) => /^\/v1\/(renew|recover|attest)\//.test(c.path)).length;
    const before = exchanges();
    await h.clock.advance(3 * HOUR);
    assert.is(exchanges(), before, 'no exchange after a definitive refusal, not even when the SVID expires');
    assert.is(
      h.agent.counters.get('edgeward_rotation_failures_total', { reason: 'ERR_UPSTREAM_REFUSED' }),
      1,
    );
    // Disabled and unknown gateways are definitive too; an operator's request tries again.
    h.issuer.refusals.set('/v1/', 'ERR_ISSUER_GATEWAY_DISABLED');
    await h.agent.rotateNow();
    assert.is(h.agent.status().upstream.lastError?.remoteCode, 'ERR_ISSUER_GATEWAY_DISABLED');
    assert.is(h.agent.status().upstream.state, 'refused');
    await h.agent.stop();
  });

  it('stop is idempotent, cancels every timer, and later calls fail with ERR_AGENT_CLOSED', async () => {
    const h = await make();
    await h.clock.advance(0);
    await h.agent.stop();
    await h.agent.stop();
    assert.equal(h.clock.pendingTimers(), []);
    await rejects(() => h.agent.rotateNow(), 'ERR_AGENT_CLOSED');
    await rejects(() => h.agent.start(), 'ERR_AGENT_CLOSED');
  });
}

suite(false);
suite(true);

test.run();
