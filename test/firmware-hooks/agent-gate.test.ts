/**
 * `hook agent-gate` (firmware-hooks/agent-gate.ts), the agent unit's ExecCondition: the agent may
 * start with no update in flight or once post-boot succeeded, stays down while an update waits for
 * post-boot or rollback, and — deny by default — stays down when the state file is unreadable.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { agentMayStart } from '../../firmware-hooks/agent-gate.ts';
import { type OtaPhase, STATE_FILE, writeState } from '../../firmware-hooks/ota-state.ts';

let dir: string;
test.before.each(async () => {
  dir = await mkdtemp(join(tmpdir(), 'edgeward-agent-gate-'));
});
test.after.each(async () => {
  await rm(dir, { recursive: true, force: true });
});

const inPhase = async (phase: OtaPhase): Promise<boolean> => {
  await writeState(dir, { format: 'edgeward-ota/1', phase, version: '2.0', manifest: '{}', updatedAt: 0 });
  return (await agentMayStart(dir)).ok;
};

test('no update in flight: the agent starts', async () => {
  assert.equal(await agentMayStart(dir), { ok: true, reason: 'no update in flight' });
});

test('installed and failed keep the agent down; verified and booted do not', async () => {
  assert.is(await inPhase('installed'), false);
  assert.is(await inPhase('failed'), false);
  assert.is(await inPhase('verified'), true);
  assert.is(await inPhase('booted'), true);
});

test('an unreadable state file keeps the agent down, naming the cause', async () => {
  await writeFile(join(dir, STATE_FILE), 'not json', { mode: 0o600 });
  const gate = await agentMayStart(dir);
  assert.is(gate.ok, false);
  assert.match(gate.reason, /^ERR_HOOK_STATE_FILE: /);
});

test.run();
