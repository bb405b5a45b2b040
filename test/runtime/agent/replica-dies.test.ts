import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { dyingReplicas, TD } from './helpers/dying-replicas.ts';
import { HOUR, harness } from './helpers/harness.ts';

async function scenario(single: boolean) {
  // Replica A dies while storing a renewal session (its connections cut mid-request).
  const r = await dyingReplicas('replica-dies-', {
    single,
    diesAt: { prefix: 'session/', commit: 'before' },
  });
  const { clock, a, b, attestor, upstream, seen } = r;
  const h = await harness({}, { startAgent: false });
  const agent = await h.restart({
    clock,
    trustDomain: TD,
    attestor,
    upstream,
    breaker: { failures: 1, openMs: 24 * HOUR },
  });
  // Settles at the next identity change, or at a failed attempt (so a regression fails, not hangs).
  let retried: (() => void) | undefined;
  const warn = h.logger.warn.bind(h.logger);
  h.logger.warn = (msg, fields = {}) => {
    warn(msg, fields);
    if (fields.event === 'identity.retry') retried?.();
  };
  const changed = () =>
    new Promise<void>((resolve) => {
      retried = resolve;
      agent.svidSource.onChange(() => resolve());
    });
  try {
    let next = changed();
    await h.clock.advance(0);
    await next;
    const first = agent.svidSource.getX509Svid();
    assert.is(first.spiffeId, `spiffe://${TD}/gateway/gw-1`);
    assert.is(agent.status().upstream.endpoint, a.url, 'attested through A');

    r.arm();
    next = changed();
    await h.clock.advance(0.6 * HOUR);
    await next;
    assert.equal(seen, ['A died mid-request']);
    const renewed = agent.svidSource.getX509Svid();
    assert.ok(renewed.notAfter > first.notAfter, 'renewed');
    const st = agent.status();
    assert.is(
      st.upstream.endpoint,
      single ? a.url : b.url,
      single ? 'the same URL, again' : 'renewed through B',
    );
    assert.is(st.breaker.state, 'closed');
    assert.is(st.upstream.consecutiveFailures, 0);
    const failover = h.logger.lines.filter((l) => l.fields.event === 'upstream.failover');
    assert.is(failover.length, 1);
    assert.is(failover[0]?.fields.endpoint, a.url);
    assert.is(failover[0]?.fields.code, 'ERR_UPSTREAM_UNREACHABLE');
    assert.is(
      h.logger.lines.filter((l) => l.fields.event === 'identity.retry').length,
      0,
      'no failed attempt',
    );
  } finally {
    await agent.stop();
    await r.close();
  }
}

test('a replica killed mid-renewal: retried on the next endpoint, the breaker stays closed', () =>
  scenario(false));

test('one URL (a load balancer): a connection reset mid-renewal is retried once on the same URL, the breaker stays closed', () =>
  scenario(true));

test.run();
