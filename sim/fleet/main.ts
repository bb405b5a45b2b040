/**
 * `npm run sim -- --gateways 20 --devices 50 --hours 72 [--kills 100] [--seed S] [--ttl 60]
 * [--only NAME] [--svg FILE]`: run the fleet and fault simulation, print the timeline and the
 * results table, write the SVG chart (default `fleet-sim.svg`), and exit 1 on any violation.
 * A development tool: the composition root for the simulator, so it builds the real clock-free
 * pieces itself (everything runs on the virtual clock).
 */
import 'reflect-metadata';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MIN } from './fleet.ts';
import { runFleetSimulation } from './run.ts';

const { values } = parseArgs({
  options: {
    gateways: { type: 'string', default: '20' },
    devices: { type: 'string', default: '50' },
    hours: { type: 'string', default: '72' },
    kills: { type: 'string', default: '100' },
    seed: { type: 'string', default: 'fleet' },
    ttl: { type: 'string', default: '60' },
    only: { type: 'string', multiple: true },
    svg: { type: 'string', default: 'fleet-sim.svg' },
  },
});

const int = (name: string, v: string | undefined, min: number): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) {
    console.error(`sim: --${name} must be an integer >= ${min} (got ${v})`);
    process.exit(2);
  }
  return n;
};

const dir = mkdtempSync(join(tmpdir(), 'edgeward-fleet-'));
const started = Date.now();
try {
  const out = await runFleetSimulation({
    gateways: int('gateways', values.gateways, 1),
    devices: int('devices', values.devices, 0),
    hours: int('hours', values.hours, 1),
    kills: int('kills', values.kills, 0),
    svidTtlMs: int('ttl', values.ttl, 2) * MIN,
    seed: values.seed,
    dir,
    ...(values.only === undefined ? {} : { only: values.only }),
    log: (line) => console.log(line),
  });
  console.log(`\n${out.timeline}\n`);
  console.log(`${out.resultsText}\n`);
  console.log(
    `${out.virtualHours.toFixed(1)} virtual hours, ${out.rotations} rotations, ${out.kills} kills, ${out.violations.length} violations, ${((Date.now() - started) / 1000).toFixed(1)} s real time`,
  );
  for (const v of out.violations.slice(0, 50))
    console.log(
      `VIOLATION ${new Date(v.at).toISOString()} [${v.scenario}] ${v.invariant} ${v.gateway}: ${v.detail}`,
    );
  writeFileSync(values.svg, out.svg);
  console.log(`chart: ${values.svg}`);
  process.exitCode = out.violations.length === 0 ? 0 : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
