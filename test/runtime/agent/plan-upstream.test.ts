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
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { rejects } from '../../helpers/rejects.ts';

test('upstream.timeout bounds a call to an issuer that never answers (exactly, on the injected clock)', async () => {
  const sockets: Socket[] = [];
  const server = createServer((s) => sockets.push(s)); // a black hole: accepted, never answered
  const connected = new Promise<void>((r) => server.once('connection', () => r()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const config = {
    upstream: { endpoints: [`https://127.0.0.1:${port}`], timeout: '200ms' },
  } as unknown as AgentConfig;
  const clock = new VirtualClock();
  const t0 = clock.now();
  const upstream = await upstreamFor(config, clock);
  try {
    const err = rejects<{ fields: { reason?: string } }>(
      () => (upstream.endpoints[0] as (typeof upstream.endpoints)[0]).post('/v1/firmware/commit', {}),
      'ERR_UPSTREAM_UNREACHABLE',
    );
    await connected; // the request reached the black hole; only the timeout can end it
    // upstream.timeout, not the client's 10 s default: one timer, due 200 ms after the call.
    assert.equal(clock.pendingTimers(), [{ name: 'upstream-timeout', due: t0 + 200 }]);
    await clock.advance(199);
    assert.is(clock.pendingTimers().length, 1, 'still waiting at 199 ms');
    await clock.advance(1);
    assert.is((await err).fields.reason, 'timeout');
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
