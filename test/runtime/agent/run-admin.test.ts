/**
 * `runAgent` (dev plan: TypeScript TPM simulator, in-process issuer) as an operator meets it,
 * issue 15 items 7, 9 and 10: a policy file that does not load stops the agent at start with its
 * problems and lines; a broker that fails to start is reported by `/v1/status` and `edgeward
 * status` exits 1; `/v1/status` answers at once after start; the admin API refuses a device id
 * the signer would refuse (a token that could never be used).
 */
import { writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { adminRequest } from '../../../runtime/admin/client.ts';
import type { StatusReport } from '../../../runtime/admin/report.ts';
import { type AgentPlan, runAgent } from '../../../runtime/agent/run.ts';
import { devPlan } from '../../../runtime/cli/dev-plan.ts';
import { main } from '../../../runtime/cli/main.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { rejects } from '../../helpers/rejects.ts';

async function plan(dataDir: string, logger: MemoryLogger, enrollPort = 0): Promise<AgentPlan> {
  return devPlan({ dataDir, clock: systemClock, random: cryptoRandom, logger, mqttPort: 0, enrollPort });
}

/** Asks for the status until `done` says so (the broker starts asynchronously). */
async function statusUntil(socket: string, done: (r: StatusReport) => boolean): Promise<StatusReport> {
  for (;;) {
    const r = await adminRequest<StatusReport>(socket, 'GET', '/v1/status');
    if (done(r)) return r;
    await new Promise((res) => setImmediate(res));
  }
}

test('a policy file that does not load stops the agent at start, with the problem and its line', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeward-run-policy-'));
  const logger = new MemoryLogger();
  const p = await plan(dir, logger);
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, 'version: 1\nrules:\n  - match: "{self}/device/*"\n    publish: 42\n');
  const err = await rejects<Error & { issues: { line?: number }[] }>(
    () =>
      runAgent(
        { ...p, broker: { ...(p.broker as NonNullable<AgentPlan['broker']>), policyFile } },
        { logger },
      ),
    'ERR_POLICY_INVALID',
  );
  assert.ok(
    err.issues.some((i) => i.line === 4),
    err.message,
  );
  assert.match(err.message, /line 4/);
  await p.onStop?.();
});

test('status answers at once after start; a broker that failed is reported and status exits 1', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeward-run-status-'));
  // The enrollment port is taken: the broker cannot start.
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const taken = (blocker.address() as { port: number }).port;
  const logger = new MemoryLogger();
  const p = await plan(dir, logger, taken);
  const socket = join(dir, 'admin.sock');
  // Requests go out from before the agent starts until one is answered: the first answer comes
  // as soon as the socket accepts.
  let stop = false;
  const first = (async (): Promise<StatusReport> => {
    for (;;) {
      try {
        return await adminRequest<StatusReport>(socket, 'GET', '/v1/status');
      } catch (err) {
        if ((err as { code?: string }).code !== 'ERR_ADMIN_UNREACHABLE' || stop) throw err;
      }
      await new Promise((res) => setImmediate(res));
    }
  })();
  const running = await runAgent(p, { logger });
  try {
    const early = await first;
    assert.type(early.store.values, 'number');
    const failed = await statusUntil(socket, (r) => r.broker.state === 'failed');
    assert.is(failed.broker.error?.code, 'ERR_BROKER_LISTEN');
    const io = captureIo({ cwd: dir });
    const code = await main(['status', '--socket', socket], io);
    assert.is(code, 1, io.stdout.join('\n'));
    assert.match(io.stdout.join('\n'), /broker\s+FAILED: ERR_BROKER_LISTEN/);
  } finally {
    stop = true;
    await running.stop();
    blocker.close();
  }
});

test('the admin API refuses a device id the signer would refuse; a serving broker is reported', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeward-run-token-'));
  const logger = new MemoryLogger();
  const running = await runAgent(await plan(dir, logger), { logger });
  try {
    const socket = running.adminSocket;
    const serving = await statusUntil(socket, (r) => r.broker.state !== 'starting');
    assert.is(serving.broker.state, 'serving');
    const e = await rejects<{ fields: { remoteCode: string } }>(
      () => adminRequest(socket, 'POST', '/v1/device-tokens', { id: 'a'.repeat(65), ttlMs: 60_000 }),
      'ERR_ADMIN_REQUEST',
    );
    assert.is(e.fields.remoteCode, 'ERR_DEVICE_ID_INVALID');
    const ok = await adminRequest<{ token: string }>(socket, 'POST', '/v1/device-tokens', {
      id: 'a'.repeat(64),
      ttlMs: 60_000,
    });
    assert.match(ok.token, /^ewt1\./);
  } finally {
    await running.stop();
  }
});

test.run();
