/**
 * The CI soak of the fleet simulator: a small fleet (4 gateways with their own TPM simulators,
 * 3 in-process devices each, the real issuer) through every scenario of issue 9 on the virtual
 * clock, with 30 kill -9s; two of the gateways also run their real broker on loopback with 3
 * device-SDK publishers and a collector exchanging QoS 1 messages (under libfaketime, see
 * sim/fleet/wall-time.ts, so the program is run as `npm run sim` runs it, in a child process).
 *
 * Asserted: the safety invariants (nothing expired served or accepted, revocation, store loads,
 * firmware gate) hold with zero violations; no acknowledged QoS 1 message is lost across SVID
 * rotation, device rotation, the CA rotation or a gateway restart (graceful or kill -9: the broker
 * journals persistent sessions in the gateway's store, transport/mqtt/persistence); every
 * scenario ran its checks.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { QosTotals, SimulationOutput } from '../../sim/fleet/run.ts';

const SAFETY = new Set([
  'no-expired-served',
  'no-expired-accepted',
  'revocation',
  'store-loads',
  'firmware-gate',
]);

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
    assert.ok(
      r.status === 0 || r.status === 1,
      `simulator failed to run (status ${r.status}): ${text.slice(-2000)}`,
    );
    const out = JSON.parse(readFileSync(json, 'utf8')) as Out;
    const safety = out.violations.filter((v) => SAFETY.has(v.invariant));
    assert.equal(safety, [], 'safety invariants violated');
    const qosLost = out.violations.filter((v) => v.invariant === 'qos1-no-loss');
    assert.equal(qosLost, [], 'acknowledged QoS 1 messages lost');
    const other = out.violations.filter((v) => !SAFETY.has(v.invariant) && v.invariant !== 'qos1-no-loss');
    for (const v of other) console.log(`violation [${v.scenario}] ${v.invariant} ${v.gateway}: ${v.detail}`);
    assert.is(out.results.length, 10, 'baseline + 9 scenarios');
    for (const s of out.results) assert.ok(s.checks > 100, `${s.scenario}: only ${s.checks} checks`);
    assert.ok(out.kills >= 30, `kills: ${out.kills}`);
    assert.ok(out.rotations > 50, `rotations: ${out.rotations}`);
    // Real traffic went through, across broker restarts (kills, TPM resets, the MQTT restarts).
    assert.ok(out.qos.acked > 2_000, `QoS 1 acknowledged: ${out.qos.acked}`);
    assert.ok(out.qos.received >= out.qos.acked - out.qos.lost, 'ledger does not add up');
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
