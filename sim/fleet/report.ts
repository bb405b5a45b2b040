/**
 * Text output of a fleet run: the timeline table (one row per sample interval) and the results
 * table (scenario, invariant checks run, violations, recovery time), both plain fixed-width text
 * that fits a terminal and a README.
 *
 * @example
 * ```ts
 * console.log(timelineTable(fleet.timeline, HOUR));
 * console.log(resultsTable(fleet.invariants.results()));
 * ```
 */
import type { Sample } from './fleet.ts';
import type { ScenarioResult } from './invariants.ts';

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(w[i] as number))
      .join('  ')
      .trimEnd();
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

/** One row per `everyMs` of virtual time (the last sample of each interval). */
export function timelineTable(samples: readonly Sample[], everyMs: number): string {
  if (samples.length === 0) return '(no samples)';
  const t0 = (samples[0] as Sample).t;
  const rows: string[][] = [];
  let next = t0;
  for (const s of samples) {
    if (s.t < next) continue;
    next = s.t + everyMs;
    rows.push([
      `${((s.t - t0) / 3_600_000).toFixed(1)} h`,
      s.scenario,
      s.issuerUp ? 'up' : 'DOWN',
      String(s.gatewaysAlive),
      String(s.gatewaysServing),
      String(s.devicesValid),
      String(s.rotations),
    ]);
  }
  return table(['time', 'scenario', 'issuer', 'gw alive', 'gw serving', 'devices valid', 'rotations'], rows);
}

export function resultsTable(results: readonly ScenarioResult[]): string {
  return table(
    ['scenario', 'invariant checks', 'violations', 'recovery'],
    results.map((r) => [
      r.scenario,
      String(r.checks),
      String(r.violations),
      r.recoveryMs === undefined ? '-' : `${(r.recoveryMs / 1000).toFixed(0)} s`,
    ]),
  );
}
