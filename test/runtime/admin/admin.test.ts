import { mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { adminRequest, findAdminSocket } from '../../../runtime/admin/client.ts';
import { renderMetrics } from '../../../runtime/admin/metrics.ts';
import { type StatusReport, statusReport } from '../../../runtime/admin/report.ts';
import { type AdminServer, startAdmin } from '../../../runtime/admin/server.ts';
import { main } from '../../../runtime/cli/main.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { rejects } from '../../helpers/rejects.ts';
import { harness, MIN } from '../agent/helpers/harness.ts';

const listeners = [
  { name: 'mqtt', address: '127.0.0.1:8883' },
  { name: 'enrollment', address: '127.0.0.1:8884' },
];

async function setup() {
  const h = await harness();
  await h.clock.advance(0);
  const dir = mkdtempSync(join(tmpdir(), 'ew-admin-'));
  mkdirSync(join(dir, '.edgeward'));
  const socketPath = join(dir, '.edgeward', 'admin.sock');
  const tokens: { id: string; ttlMs: number }[] = [];
  const admin = await startAdmin({
    socketPath,
    logger: new MemoryLogger(),
    metrics: { host: '127.0.0.1', port: 0 },
    handlers: {
      status: () => statusReport(h.agent.status(), { listeners, store: { values: 3, bytes: 100 } }),
      metrics: () => renderMetrics(h.agent.status(), h.agent.counters),
      createDeviceToken: async (req) => {
        tokens.push(req);
        if (req.id === 'bad/id') throw new TypeError('device id must be one path segment');
        return { token: `ewt1.secret.${req.id}`, expiresAt: h.clock.now() + req.ttlMs };
      },
    },
  });
  return { h, dir, socketPath, admin, tokens };
}

test('the admin socket is 0600 and serves the status JSON with identity, expiries and listeners', async () => {
  const { h, socketPath, admin } = await setup();
  assert.is(statSync(socketPath).mode & 0o777, 0o600);
  const s = await adminRequest<StatusReport>(socketPath, 'GET', '/v1/status');
  assert.is(s.gateway.spiffeId, 'spiffe://fleet.example/gateway/gw-1');
  assert.is(s.svid?.notAfter, new Date(h.agent.svidSource.getX509Svid().notAfter).toISOString());
  assert.ok(s.deviceCa?.notAfter);
  assert.equal(s.broker.listeners, listeners);
  assert.is(s.upstream.state, 'ok');
  assert.is(s.breaker.state, 'closed');
  assert.is(s.store.protector, 'key-file');
  assert.ok(s.rotation.next);
  await admin.close();
  await admin.close();
  await h.agent.stop();
});

test('edgeward status finds .edgeward/admin.sock from a subdirectory; --json and the table', async () => {
  const { h, dir, admin } = await setup();
  const sub = join(dir, 'a', 'b');
  mkdirSync(sub, { recursive: true });
  const t = captureIo({ cwd: sub });
  assert.is(await main(['status', '--json'], t), 0);
  const doc = JSON.parse(t.stdout.join('\n')) as StatusReport;
  assert.is(doc.gateway.spiffeId, 'spiffe://fleet.example/gateway/gw-1');
  assert.ok(doc.svid?.notAfter && doc.deviceCa?.notAfter && doc.broker.listeners.length === 2);
  const human = captureIo({ cwd: dir });
  assert.is(await main(['status'], human), 0);
  const text = human.stdout.join('\n');
  assert.match(text, /^gateway\s+spiffe:\/\/fleet\.example\/gateway\/gw-1$/m);
  assert.match(text, /^svid expires\s+\S+Z\s+\(in 1\.0 h\)$/m);
  assert.match(text, /^broker mqtt\s+127\.0\.0\.1:8883$/m);
  await admin.close();
  // No agent: one clear line and exit 1.
  const none = captureIo({ cwd: mkdtempSync(join(tmpdir(), 'ew-none-')) });
  assert.is(await main(['status'], none), 1);
  assert.match(none.stderr.join('\n'), /ERR_ADMIN_UNREACHABLE/);
  await h.agent.stop();
});

test('status exits 1 when the agent serves no valid SVID', async () => {
  const { h, dir, admin } = await setup();
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(2 * 60 * MIN);
  const t = captureIo({ cwd: dir });
  assert.is(await main(['status'], t), 1);
  assert.match(t.stdout.join('\n'), /serving\s+NO/);
  await admin.close();
  await h.agent.stop();
});

test('/metrics in Prometheus text on loopback and on the socket', async () => {
  const { h, socketPath, admin } = await setup();
  const body = await new Promise<string>((resolve, reject) => {
    request({ host: '127.0.0.1', port: admin.metricsPort, path: '/metrics' }, (res) => {
      let s = '';
      res.on('data', (d) => (s += d));
      res.on('end', () => resolve(s));
    })
      .on('error', reject)
      .end();
  });
  assert.match(body, /^# TYPE edgeward_rotations_total counter$/m);
  assert.match(body, /^edgeward_rotations_total\{via="attest"\} 1$/m);
  assert.match(body, /^edgeward_svid_expiry_seconds 3600$/m);
  assert.match(body, /^edgeward_devices 0$/m);
  assert.match(body, /^edgeward_serving 1$/m);
  assert.not.match(body, /PRIVATE|BEGIN/);
  h.issuer.faults.set('*', '503');
  await h.agent.rotateNow();
  const again = await adminRequest<string>(socketPath, 'GET', '/metrics');
  assert.match(again, /^edgeward_rotation_failures_total\{reason="ERR_UPSTREAM_UNAVAILABLE"\} 1$/m);
  await admin.close();
  await h.agent.stop();
});

test('POST /v1/device-tokens routes to the handler; bad bodies get typed errors', async () => {
  const { h, socketPath, admin, tokens } = await setup();
  const out = await adminRequest<{ token: string; expiresAt: number }>(
    socketPath,
    'POST',
    '/v1/device-tokens',
    {
      id: 'sensor-1',
      ttlMs: 600_000,
    },
  );
  assert.is(out.token, 'ewt1.secret.sensor-1');
  assert.equal(tokens, [{ id: 'sensor-1', ttlMs: 600_000 }]);
  for (const bad of [{}, { id: 'x' }, { id: 'x', ttlMs: -1 }, { id: 1, ttlMs: 5 }, [1]])
    await rejects(() => adminRequest(socketPath, 'POST', '/v1/device-tokens', bad), 'ERR_ADMIN_REQUEST');
  const e = await rejects<{ fields: { remoteCode: string } }>(
    () => adminRequest(socketPath, 'POST', '/v1/device-tokens', { id: 'bad/id', ttlMs: 5 }),
    'ERR_ADMIN_REQUEST',
  );
  assert.is(e.fields.remoteCode, 'ERR_ADMIN_REQUEST');
  await rejects(() => adminRequest(socketPath, 'GET', '/v1/nothing'), 'ERR_ADMIN_REQUEST');
  await admin.close();
  await h.agent.stop();
});

test('a stale socket file is replaced; a live one is refused; metrics refuse a non-loopback host', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ew-stale-'));
  const path = join(dir, 'admin.sock');
  writeFileSync(path, '');
  const handlers = { status: () => ({}), metrics: () => '' };
  const a: AdminServer = await startAdmin({ socketPath: path, handlers, logger: new MemoryLogger() });
  await rejects(
    () => startAdmin({ socketPath: path, handlers, logger: new MemoryLogger() }),
    'ERR_ADMIN_REQUEST',
  );
  await a.close();
  // A socket left by a killed process (nobody listening) is taken over.
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(join(dir, 'dead.sock'), r));
  const b = await startAdmin({ socketPath: join(dir, 'x.sock'), handlers, logger: new MemoryLogger() });
  await b.close();
  await new Promise<void>((r) => dead.close(() => r()));
  await rejects(
    () =>
      startAdmin({
        socketPath: join(dir, 'y.sock'),
        handlers,
        logger: new MemoryLogger(),
        metrics: { host: '0.0.0.0', port: 0 },
      }),
    'ERR_ADMIN_REQUEST',
  );
  await rejects(() => findAdminSocket(mkdtempSync(join(tmpdir(), 'ew-nf-')), {}), 'ERR_ADMIN_UNREACHABLE');
  assert.is(findAdminSocket('/x', { EDGEWARD_ADMIN_SOCKET: '/run/a.sock' }), '/run/a.sock');
});

test('/metrics shows the broker session journal only when the broker keeps one', async () => {
  const { h, admin } = await setup();
  const without = renderMetrics(h.agent.status(), h.agent.counters);
  assert.not.match(without, /edgeward_mqtt_/);
  // The agent's own counters are there from the first scrape, at 0 before any event.
  assert.match(without, /^edgeward_clock_jumps_total 0$/m);
  assert.match(without, /^edgeward_device_svids_total 0$/m);
  assert.not.match(without, /edgeward_rotation_failures_total/);
  const journal = { sessions: 2, queued: 7, queuedBytes: 700, dropped: 3, corrupt: 1 };
  const text = renderMetrics(h.agent.status(), h.agent.counters, undefined, journal);
  assert.match(text, /^edgeward_mqtt_persistent_sessions 2$/m);
  assert.match(text, /^edgeward_mqtt_queued_messages 7$/m);
  assert.match(text, /^edgeward_mqtt_queued_bytes 700$/m);
  assert.match(text, /^# TYPE edgeward_mqtt_queue_dropped_total counter$/m);
  assert.match(text, /^edgeward_mqtt_queue_dropped_total 3$/m);
  assert.match(text, /^edgeward_mqtt_journal_corrupt_total 1$/m);
  assert.not.match(text, /edgeward_mqtt_refusals_total/);
  // The broker's refusals by code (a retained-cap refusal among them) and its retained store.
  const broker = {
    refusals: { ERR_MQTT_RETAINED_CAP: 4, ERR_MQTT_PUBLISH_DENIED: 1 },
    retained: { count: 12, bytes: 3400, droppedAtStart: 2 },
  };
  const withBroker = renderMetrics(h.agent.status(), h.agent.counters, undefined, journal, undefined, broker);
  assert.match(withBroker, /^# TYPE edgeward_mqtt_refusals_total counter$/m);
  assert.match(withBroker, /^edgeward_mqtt_refusals_total\{code="ERR_MQTT_RETAINED_CAP"\} 4$/m);
  assert.match(withBroker, /^edgeward_mqtt_refusals_total\{code="ERR_MQTT_PUBLISH_DENIED"\} 1$/m);
  assert.match(withBroker, /^edgeward_mqtt_retained_messages 12$/m);
  assert.match(withBroker, /^edgeward_mqtt_retained_bytes 3400$/m);
  assert.match(withBroker, /^edgeward_mqtt_retained_dropped_at_start_total 2$/m);
  await admin.close();
  await h.agent.stop();
});

test.run();
