#!/usr/bin/env node
// The long soak (issue 9): the fleet and fault simulation at full size, several seeds in turn.
// `node scripts/soak.mjs [--seeds 3] [-- <sim flags>]`; defaults: 20 gateways x 50 devices,
// 72 virtual hours, 100 kill -9s per seed. Prints each run's results table; exits 1 if any
// run found a violation.
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
const sep = args.indexOf('--');
const own = sep === -1 ? args : args.slice(0, sep);
const extra = sep === -1 ? [] : args.slice(sep + 1);
const seedsAt = own.indexOf('--seeds');
const seeds = seedsAt === -1 ? 3 : Number(own[seedsAt + 1]);
const ROOT = new URL('..', import.meta.url).pathname;
let failed = 0;
for (let i = 1; i <= seeds; i++) {
  const flags = [
    '--gateways',
    '20',
    '--devices',
    '50',
    '--hours',
    '72',
    '--kills',
    '100',
    '--seed',
    `soak-${i}`,
  ];
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'sim/fleet/main.ts', ...flags, '--svg', `fleet-soak-${i}.svg`, ...extra],
    { cwd: ROOT, stdio: 'inherit' },
  );
  if (r.status !== 0) failed++;
  console.log(`soak seed soak-${i}: ${r.status === 0 ? 'no violations' : 'VIOLATIONS'}`);
}
console.log(`${seeds - failed} of ${seeds} soak runs without violations`);
process.exitCode = failed === 0 ? 0 : 1;
