/**
 * `npm run sim -- --gateways 20 --devices 50 --hours 72 [--kills 100] [--seed S] [--ttl 60]
 * [--mqtt-gateways 2] [--mqtt-devices 5] [--proxy 1] [--budget-days 1] [--only NAME] [--svg FILE] [--json FILE]`:
 * run the fleet
 * and fault simulation, print the timeline and the results table, write the SVG chart (default
 * `fleet-sim.svg`) and, with `--json`, the results as JSON; exit 1 on any violation.
 *
 * A development tool and the composition root of the simulator: the identity side runs on the
 * virtual clock; the MQTT gateways' brokers and devices are real sockets, and this is where the
 * real clock for their settle waits is built; with `--proxy 1` gw-0 reaches the issuer over real
 * HTTPS through a loopback TCP proxy. TLS handshakes check certificates against the process wall
 * clock, so with either of them the program re-runs itself under libfaketime
 * (see wall-time.ts) and refuses to start without it (`apt-get install libfaketime`).
 */
import 'reflect-metadata';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { systemClock } from '../../runtime/core/clock.ts';
import { MIN } from './fleet.ts';
import { runFleetSimulation } from './run.ts';
import { faketimeEnv, processWallTime, type WallTimeSink } from './wall-time.ts';

const USAGE =
  'usage: npm run sim -- [--gateways 20] [--devices 50] [--hours 72] [--kills 100] [--seed S] [--ttl 60] ' +
  '[--mqtt-gateways 2] [--mqtt-devices 5] [--proxy 1] [--budget-days 1] [--only NAME] [--svg FILE] [--json FILE]';

const parsed = (() => {
  try {
    return parseArgs({
      options: {
        gateways: { type: 'string', default: '20' },
        devices: { type: 'string', default: '50' },
        hours: { type: 'string', default: '72' },
        kills: { type: 'string', default: '100' },
        seed: { type: 'string', default: 'fleet' },
        ttl: { type: 'string', default: '60' },
        only: { type: 'string', multiple: true },
        svg: { type: 'string', default: 'fleet-sim.svg' },
        json: { type: 'string' },
        'mqtt-gateways': { type: 'string', default: '2' },
        'mqtt-devices': { type: 'string', default: '5' },
        proxy: { type: 'string', default: '1' },
        'budget-days': { type: 'string', default: '1' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    console.error(`sim: ${(err as Error).message}`);
    console.error(USAGE);
    process.exit(2);
  }
})();
if (parsed.values.help) {
  console.log(USAGE);
  process.exit(0);
}
const { values } = parsed;

const int = (name: string, v: string | undefined, min: number): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) {
    console.error(`sim: --${name} must be an integer >= ${min} (got ${v})`);
    process.exit(2);
  }
  return n;
};

const mqttGateways = int('mqtt-gateways', values['mqtt-gateways'], 0);
const mqttDevices = int('mqtt-devices', values['mqtt-devices'], 1);
const proxy = int('proxy', values.proxy, 0) > 0;
const dir = mkdtempSync(join(tmpdir(), 'edgeward-fleet-'));
if ((mqttGateways > 0 || proxy) && process.env.FAKETIME_TIMESTAMP_FILE === undefined) {
  // Re-run under libfaketime: the wall clock follows the virtual one (wall-time.ts).
  const env = faketimeEnv(join(dir, 'wall-time'));
  if (env === undefined) {
    console.error(
      'sim: --mqtt-gateways needs libfaketime (apt-get install libfaketime), or pass --mqtt-gateways 0',
    );
    rmSync(dir, { recursive: true, force: true });
    process.exit(2);
  }
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, ...env },
  });
  rmSync(dir, { recursive: true, force: true });
  process.exit(r.status ?? 1);
}
const started = performance.now();
const wallTime = mqttGateways > 0 || proxy ? processWallTime() : undefined;
try {
  const out = await runFleetSimulation({
    gateways: int('gateways', values.gateways, 1),
    devices: int('devices', values.devices, 0),
    hours: int('hours', values.hours, 1),
    kills: int('kills', values.kills, 0),
    svidTtlMs: int('ttl', values.ttl, 2) * MIN,
    offlineBudgetMs: int('budget-days', values['budget-days'], 1) * 24 * 60 * MIN,
    seed: values.seed,
    dir,
    ...(values.only === undefined ? {} : { only: values.only }),
    ...(mqttGateways === 0
      ? {}
      : {
          mqtt: {
            gateways: mqttGateways,
            devices: mqttDevices,
            realClock: systemClock,
            wallTime: wallTime as WallTimeSink,
          },
        }),
    ...(proxy ? { proxy: { realClock: systemClock, wallTime: wallTime as WallTimeSink } } : {}),
    log: (line) => console.log(line),
  });
  const seconds = (performance.now() - started) / 1000;
  console.log(`\n${out.timeline}\n`);
  console.log(`${out.resultsText}\n`);
  console.log(
    `${out.virtualHours.toFixed(1)} virtual hours, ${out.rotations} rotations, ${out.kills} kills, ${out.violations.length} violations, ${seconds.toFixed(1)} s real time`,
  );
  if (out.qos !== undefined)
    console.log(
      `QoS 1 over ${mqttGateways} MQTT gateways x ${mqttDevices} devices: ${out.qos.sent} sent, ${out.qos.acked} acknowledged, ${out.qos.received} received, ${out.qos.duplicates} duplicates, ${out.qos.lost} lost, ${out.qos.brokerStarts} broker starts, ${out.qos.connectedAtEnd} of ${out.qos.publishers} publishers connected at the end, ${out.qos.sentConnected} published while connected, ${out.qos.unacknowledged} of them never acknowledged (${out.qos.exempted} exempt: session ended at the budget end), ${out.qos.lockouts} devices locked out (${out.qos.lockoutsWithinBudget} within the budget), ${out.qos.reenrolled} re-enrolled by themselves`,
    );
  if (out.proxy !== undefined)
    console.log(
      `gw-0 over HTTPS through the TCP proxy: ${out.proxy.calls} calls (${out.proxy.failed} failed), ${out.proxy.connections} TCP connections`,
    );
  if (values.json !== undefined)
    writeFileSync(
      values.json,
      JSON.stringify(
        {
          results: out.results,
          violations: out.violations,
          rotations: out.rotations,
          kills: out.kills,
          virtualHours: out.virtualHours,
          qos: out.qos,
          proxy: out.proxy,
          seconds,
        },
        null,
        1,
      ),
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
