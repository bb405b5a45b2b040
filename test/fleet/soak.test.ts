/**
 * The CI soak of the fleet simulator: a small fleet (4 gateways with their own TPM simulators,
 * 3 devices each, the real issuer) through every scenario of issue 9 on the virtual clock, with
 * 30 kill -9s. Every invariant is checked after every simulated minute; the safety invariants
 * (nothing expired served or accepted, revocation, store loads, firmware gate) must hold with
 * zero violations. Recovery violations are reported per scenario (see the README's results
 * table for what they are).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runFleetSimulation } from '../../sim/fleet/run.ts';

const SAFETY = new Set([
  'no-expired-served',
  'no-expired-accepted',
  'revocation',
  'store-loads',
  'firmware-gate',
]);

test('short soak: every scenario, safety invariants hold, every scenario ran its checks', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-soak-'));
  try {
    const out = await runFleetSimulation({ gateways: 4, devices: 3, hours: 12, kills: 30, dir, seed: 'ci' });
    console.log(out.resultsText);
    for (const v of out.violations)
      console.log(`violation [${v.scenario}] ${v.invariant} ${v.gateway}: ${v.detail}`);
    const safety = out.violations.filter((v) => SAFETY.has(v.invariant));
    assert.equal(safety, [], 'safety invariants violated');
    assert.is(out.results.length, 9, 'baseline + 8 scenarios');
    for (const r of out.results) assert.ok(r.checks > 100, `${r.scenario}: only ${r.checks} checks`);
    assert.ok(out.kills >= 30, `kills: ${out.kills}`);
    assert.ok(out.rotations > 50, `rotations: ${out.rotations}`);
    const outage = out.results.find((r) => r.scenario.startsWith('issuer down'));
    assert.ok(
      outage?.recoveryMs !== undefined && outage.recoveryMs <= 6 * 60_000,
      `outage recovery ${outage?.recoveryMs}`,
    );
    assert.match(out.svg, /^<svg /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
