import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AuditEvent } from '../../../runtime/issuer/records.ts';
import { dyingReplicas, TD } from './helpers/dying-replicas.ts';
import { HOUR, harness } from './helpers/harness.ts';

async function scenario(single: boolean) {
  const r = await dyingReplicas('lost-answer-', { single, diesAt: { prefix: 'done/', commit: 'after' } });
  const { clock, shared, a, b, attestor, upstream, seen } = r;
  r.arm();
  const h = await harness({}, { startAgent: false });
  const agent = await h.restart({
    clock,
    trustDomain: TD,
    attestor,
    upstream,
    breaker: { failures: 1, openMs: 24 * HOUR },
  });
  // Settles at the identity, or at a failed attempt (so a regression fails, not hangs).
  let retried: (() => void) | undefined;
  const warn = h.logger.warn.bind(h.logger);
  h.logger.warn = (msg, fields = {}) => {
    warn(msg, fields);
    if (fields.event === 'identity.retry') retried?.();
  };
  try {
    const enrolled = new Promise<void>((resolve) => {
      retried = resolve;
      agent.svidSource.onChange(() => resolve());
    });
    await h.clock.advance(0);
    await enrolled;
    assert.equal(seen, ['A died after its COMMIT']);
    assert.is(agent.svidSource.getX509Svid().spiffeId, `spiffe://${TD}/gateway/gw-1`);
    assert.is(
      h.logger.lines.filter((l) => l.fields.event === 'identity.retry').length,
      0,
      'no failed attempt',
    );
    assert.is(agent.status().upstream.endpoint, single ? a.url : b.url);
    const audit = (await shared.list<AuditEvent>('audit/')).map(([, v]) => v.event);
    assert.is(audit.filter((e) => e === 'issue').length, 1, 'issued once');
    assert.is(audit.filter((e) => e === 'retry').length, 1, 'answered again once');
    assert.is(audit.filter((e) => e === 'refuse').length, 0);
    assert.is((await shared.list('issued/')).length, 2, 'one SVID and one delegated CA');
  } finally {
    await agent.stop();
    await r.close();
  }
}

test('the finish answer lost when replica A dies after its COMMIT: the same finish on B enrolls, one issuance', () =>
  scenario(false));

test('one URL: the connection reset after the COMMIT, the same finish again on the same URL enrolls', () =>
  scenario(true));

test.run();
