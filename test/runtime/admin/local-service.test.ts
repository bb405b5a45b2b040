/**
 * `edgeward status` (JSON and table) and `/metrics` show local service: up or not, when it stops
 * (the delegated CA's NotAfter) and the offline budget left, from the agent's server identity on
 * a virtual clock — while the upstream SVID is valid, after it expired, and after the budget end.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { renderMetrics } from '../../../runtime/admin/metrics.ts';
import { renderStatus, statusReport } from '../../../runtime/admin/report.ts';
import { serverIdentityOf } from '../../../runtime/agent/server-identity.ts';
import { harness, MIN } from '../agent/helpers/harness.ts';

const gauge = (text: string, name: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
};

test('status and metrics: budget left and stop time while up, after the SVID end, and STOPPED at the budget end', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } });
  await h.clock.advance(0);
  h.issuer.faults.set('*', 'down');
  const server = serverIdentityOf(h.agent, { clock: h.clock, logger: h.logger });
  await server.start();
  const caEnd = h.agent.status().deviceCa?.notAfter as number;
  const svidEnd = h.agent.svidSource.getX509Svid().notAfter;
  const report = () =>
    statusReport(h.agent.status(), { listeners: [], store: { values: 0, bytes: 0 }, local: server.status() });
  const metrics = () =>
    renderMetrics(h.agent.status(), h.agent.counters, undefined, undefined, server.status());

  let r = report();
  assert.is(r.local?.up, true);
  assert.is(r.local?.stopsAt, new Date(caEnd).toISOString());
  assert.is(r.local?.budgetRemainingSeconds, Math.floor((caEnd - h.clock.now()) / 1000));
  assert.match(renderStatus(r, h.clock.now()), new RegExp(`local service\\s+up until ${r.local?.stopsAt}`));
  assert.is(gauge(metrics(), 'edgeward_local_service_up'), 1);
  assert.is(gauge(metrics(), 'edgeward_local_service_stops_at_seconds'), caEnd / 1000);
  assert.is(gauge(metrics(), 'edgeward_offline_budget_remaining_seconds'), (caEnd - h.clock.now()) / 1000);
  assert.match(metrics(), /# TYPE edgeward_offline_budget_remaining_seconds gauge/);

  await h.clock.advance(svidEnd - h.clock.now() + MIN);
  r = report();
  assert.is(r.gateway.serving, false, 'the upstream SVID is gone');
  assert.is(r.local?.up, true, 'local service is not');
  assert.is(gauge(metrics(), 'edgeward_serving'), 0);
  assert.is(gauge(metrics(), 'edgeward_local_service_up'), 1);

  await h.clock.advance(caEnd - h.clock.now());
  r = report();
  assert.equal(r.local, {
    up: false,
    stopsAt: new Date(caEnd).toISOString(),
    budgetRemainingSeconds: 0,
    serverCertNotAfter: null,
  });
  assert.match(renderStatus(r, h.clock.now()), /local service\s+STOPPED: offline budget ended/);
  assert.is(gauge(metrics(), 'edgeward_local_service_up'), 0);
  assert.is(gauge(metrics(), 'edgeward_offline_budget_remaining_seconds'), 0);
  // JSON round trip as `edgeward status --json` prints it.
  assert.equal(JSON.parse(JSON.stringify(r)).local, r.local);
  server.stop();
  await h.agent.stop();
});

test('without local service facts the report says null and no gauges are emitted', async () => {
  const h = await harness();
  await h.clock.advance(0);
  const r = statusReport(h.agent.status(), { listeners: [], store: { values: 0, bytes: 0 } });
  assert.is(r.local, null);
  assert.not.match(renderStatus(r, h.clock.now()), /local service/);
  assert.is(gauge(renderMetrics(h.agent.status(), h.agent.counters), 'edgeward_local_service_up'), undefined);
  await h.agent.stop();
});

test.run();
