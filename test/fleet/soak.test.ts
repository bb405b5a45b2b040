/**
 * The CI soak of the fleet simulator: a small fleet (4 gateways with their own TPM simulators,
 * 3 in-process devices each, the real issuer) through every scenario of issue 9 on the virtual
 * clock, with 30 kill -9s; two of the gateways also run their real broker on loopback with 3
 * device-SDK publishers and a collector exchanging QoS 1 messages (under libfaketime, see
 * sim/fleet/wall-time.ts, so the program is run as `npm run sim` runs it, in a child process).
 *
 * Asserted: the simulator exits 0, and every invariant it judges (nothing expired served or
 * accepted, revocation, recovery, store loads, firmware gate, QoS 1 no loss) holds with zero
 * violations, each asserted by name; no acknowledged QoS 1 message is lost across SVID
 * rotation, device rotation, the CA rotation or a gateway restart (graceful or kill -9: the broker
 * journals persistent sessions in the gateway's store, transport/mqtt/persistence); every
 * scenario ran its checks.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { InvariantName } from '../../sim/fleet/invariants.ts';
import type { QosTotals, SimulationOutput } from '../../sim/fleet/run.ts';

/** Every invariant of sim/fleet/invariants.ts: the Record makes a new one a compile error here. */
const INVARIANTS: Record<InvariantName, true> = {
  'no-expired-served': true,
  'no-expired-accepted': true,
  revocation: true,
  recovery: true,
  'store-loads': true,
  'firmware-gate': true,
  'qos1-no-loss': true,
  'qos1-acked': true,
  'no-lockout-within-budget': true,
  'local-stops-at-budget-end': true,
  'devices-renew-offline': true,
};

/** What sim/fleet/main.ts writes with --json (the soak runs MQTT gateways: qos is there). */
type Out = Pick<SimulationOutput, 'results' | 'violations' | 'rotations' | 'kills'> & { qos: QosTotals };

test('short soak: every scenario, safety invariants hold, QoS 1 survives rotations and restarts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-soak-'));
  try {
    const json = join(dir, 'out.json');
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'sim/fleet/main.ts',
        ...['--gateways', '4', '--devices', '3', '--hours', '12', '--kills', '30', '--seed', 'ci'],
        ...['--mqtt-gateways', '2', '--mqtt-devices', '3', '--json', json, '--svg', join(dir, 'fleet.svg')],
      ],
      { cwd: new URL('../..', import.meta.url).pathname, encoding: 'utf8', timeout: 180_000 },
    );
    const text = `${r.stdout}${r.stderr}`;
    console.log(
      text
        .split('\n')
        .filter((l) => !l.startsWith('VIOLATION') && !/^\s+[\d.]+ h /.test(l))
        .join('\n'),
    );
    assert.ok(existsSync(json), `simulator wrote no results (status ${r.status}): ${text.slice(-2000)}`);
    const out = JSON.parse(readFileSync(json, 'utf8')) as Out;
    // Every invariant the simulator judges, each by name (a new one must be added here to compile).
    for (const name of Object.keys(INVARIANTS) as InvariantName[]) {
      const found = out.violations.filter((v) => v.invariant === name);
      assert.equal(
        found.map((v) => `[${v.scenario}] ${v.gateway}: ${v.detail}`),
        [],
        `invariant ${name} violated`,
      );
    }
    assert.equal(out.violations, [], 'violations of an invariant this test does not know');
    for (const s of out.results) assert.is(s.violations, 0, `${s.scenario}: ${s.violations} violations`);
    // The simulator's own verdict: exit 0 only with zero violations (main.ts).
    assert.is(r.status, 0, `simulator exit status ${r.status}: ${text.slice(-2000)}`);
    assert.is(out.results.length, 10, 'baseline + 9 scenarios');
    for (const s of out.results) assert.ok(s.checks > 100, `${s.scenario}: only ${s.checks} checks`);
    assert.ok(out.kills >= 30, `kills: ${out.kills}`);
    assert.ok(out.rotations > 50, `rotations: ${out.rotations}`);
    // Real traffic went through, across broker restarts (kills, TPM resets, the MQTT restarts).
    assert.ok(out.qos.acked > 2_000, `QoS 1 acknowledged: ${out.qos.acked}`);
    assert.is(out.qos.lost, 0, 'acknowledged QoS 1 messages lost');
    assert.ok(
      out.qos.received >= out.qos.acked,
      `received ${out.qos.received} < acknowledged ${out.qos.acked}`,
    );
    assert.ok(out.qos.brokerStarts >= 8, `broker starts: ${out.qos.brokerStarts}`);
    const outage = out.results.find((s) => s.scenario.startsWith('issuer down'));
    assert.ok(
      outage?.recoveryMs !== undefined && outage.recoveryMs <= 6 * 60_000,
      `outage recovery ${outage?.recoveryMs}`,
    );
    assert.match(readFileSync(join(dir, 'fleet.svg'), 'utf8'), /^<svg /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
