/**
 * `upstreamFor` (runtime/agent/plan.ts): the issuer client built from `upstream:`, shared by the
 * agent and the OTA hooks (commit, rollback). It honours `upstream.timeout` — regression: the hooks
 * once built their own client without it, so an issuer that accepted the connection and never
 * answered held `edgeward hook commit` for the default 10 s — and an unreadable CA file is a typed
 * config error, not a raw ENOENT.
 */
import { createServer, type Socket } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { upstreamFor } from '../../../runtime/agent/plan.ts';
import type { AgentConfig } from '../../../runtime/config/agent-schema.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { rejects } from '../../helpers/rejects.ts';

test('upstream.timeout bounds a call to an issuer that never answers', async () => {
  const sockets: Socket[] = [];
  const server = createServer((s) => sockets.push(s)); // a black hole: accepted, never answered
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const config = {
    upstream: { endpoints: [`https://127.0.0.1:${port}`], timeout: '200ms' },
  } as unknown as AgentConfig;
  const upstream = await upstreamFor(config, systemClock);
  try {
    const started = performance.now();
    const guard = setTimeout(() => {
      for (const s of sockets) s.destroy();
    }, 3_000);
    const err = await rejects<{ fields: { reason?: string } }>(
      () => (upstream.endpoints[0] as (typeof upstream.endpoints)[0]).post('/v1/firmware/commit', {}),
      'ERR_UPSTREAM_UNREACHABLE',
    );
    clearTimeout(guard);
    assert.is(err.fields.reason, 'timeout');
    assert.ok(performance.now() - started < 2_000, `took ${Math.round(performance.now() - started)} ms`);
  } finally {
    await upstream.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('an unreadable upstream.caFile is ERR_CONFIG_UNREADABLE naming the key', async () => {
  const config = {
    upstream: { endpoints: ['https://127.0.0.1:1'], caFile: '/nonexistent/edgeward-ca.pem' },
  } as unknown as AgentConfig;
  const err = await rejects<{ issues: { path: string }[] }>(
    () => upstreamFor(config, systemClock),
    'ERR_CONFIG_UNREADABLE',
  );
  assert.is(err.issues[0]?.path, 'upstream.caFile');
});

test.run();
