/**
 * The broker's session journal at the agent level: `runAgent` (dev plan: TypeScript TPM
 * simulator, in-process issuer) keeps it in the `mqtt` sublevel of its LevelDB store under the
 * data dir, and a session stored there is restored by the next agent run on the same data dir.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encode } from 'cbor-x';
import { Level } from 'level';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runAgent } from '../../runtime/agent/run.ts';
import { devPlan } from '../../runtime/cli/dev-plan.ts';
import { systemClock } from '../../runtime/core/clock.ts';
import { MemoryLogger } from '../../runtime/core/logger.ts';
import { cryptoRandom } from '../../runtime/core/random.ts';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-agent-journal-'));

async function run(logger: MemoryLogger) {
  const plan = await devPlan({
    dataDir: dir,
    clock: systemClock,
    random: cryptoRandom,
    logger,
    mqttPort: 0,
    enrollPort: 0,
  });
  const running = await runAgent(plan, { logger, clock: systemClock, random: cryptoRandom });
  for (let i = 0; i < 200 && running.listeners().length === 0; i++)
    await new Promise((r) => setTimeout(r, 50));
  return running;
}

test('the journal lives in the agent store and survives an agent restart', async () => {
  const first = await run(new MemoryLogger());
  assert.ok(first.listeners().length > 0, 'the broker started');
  await first.stop();

  const db = new Level<string, Uint8Array>(join(dir, 'store'), {
    keyEncoding: 'utf8',
    valueEncoding: 'view',
  });
  const mqtt = db.sublevel<string, Uint8Array>('mqtt', { keyEncoding: 'utf8', valueEncoding: 'view' });
  const keys = await mqtt.keys().all();
  assert.ok(keys.includes('r!$edgeward/bundle'), `the retained bundle is journaled: ${keys.join()}`);
  // A persistent session with one queued message, as a previous broker would have left it.
  await mqtt.put('s!sensor-1', encode([{ topic: 'devices/+/t', qos: 1 }]));
  const packet = {
    cmd: 'publish',
    topic: 'devices/x/t',
    payload: Buffer.from('kept'),
    qos: 1,
    retain: false,
    dup: false,
    brokerId: 'old',
    brokerCounter: 1,
  };
  await mqtt.put('q!0000000000001', encode({ clientId: 'sensor-1', packet }));
  await db.close();

  const logger = new MemoryLogger();
  const second = await run(logger);
  try {
    const restored = logger.lines.find((l) => l.msg === 'broker sessions restored');
    assert.ok(restored, 'the broker replayed its journal');
    assert.is(restored?.fields.sessions, 1);
    assert.is(restored?.fields.queued, 1);
  } finally {
    await second.stop();
  }
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
