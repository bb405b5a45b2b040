/**
 * A whole simulation: build the fleet, run every scenario in turn (each followed by its settle
 * time), then baseline until the requested virtual duration is reached, and return the tables.
 *
 * @example
 * ```ts
 * const out = await runFleetSimulation({ gateways: 20, devices: 50, hours: 72, dir, seed: '1' });
 * console.log(out.results); out.violations.length === 0;
 * ```
 */
import { seededRandom } from '../random.ts';
import { chartSvg } from './chart.ts';
import { Fleet, type FleetOptions, HOUR, MIN, type MqttFleetOptions } from './fleet.ts';
import type { ScenarioResult, Violation } from './invariants.ts';
import type { LedgerStats } from './qos-ledger.ts';
import { resultsTable, timelineTable } from './report.ts';
import { BUDGET_SCENARIOS, SCENARIOS } from './scenarios.ts';

export interface SimulationOptions {
  readonly gateways: number;
  readonly devices: number;
  readonly hours: number;
  readonly dir: string;
  readonly seed?: string;
  readonly svidTtlMs?: number;
  readonly kills?: number;
  /** Only scenarios whose name contains one of these (default all but the multi-day budget ones). */
  readonly only?: readonly string[];
  /** The issuer's offline budget (the delegated CA's lifetime; default 24 h here). */
  readonly offlineBudgetMs?: number;
  readonly log?: (line: string) => void;
  /** Real brokers and device-SDK devices on the first gateways (the QoS 1 invariant). */
  readonly mqtt?: MqttFleetOptions;
  /** gw-0 over real HTTPS through the loopback TCP proxy (see FleetOptions.proxy). */
  readonly proxy?: FleetOptions['proxy'];
}

export interface SimulationOutput {
  readonly results: ScenarioResult[];
  readonly violations: Violation[];
  readonly timeline: string;
  readonly resultsText: string;
  readonly svg: string;
  readonly rotations: number;
  /** gw-0's real HTTPS link: calls, failed calls, TCP connections through the proxy. */
  readonly proxy: { calls: number; failed: number; connections: number } | undefined;
  readonly kills: number;
  readonly virtualHours: number;
  /** QoS 1 totals over the MQTT gateways (undefined without them). */
  readonly qos: QosTotals | undefined;
}

/** The QoS 1 ledgers of the MQTT gateways added up, with their broker starts and devices. */
export interface QosTotals extends LedgerStats {
  brokerStarts: number;
  /** Publishing devices still connected at the end, of all of them. */
  connectedAtEnd: number;
  publishers: number;
  /** Devices that re-enrolled by themselves (factory certificate) after their SVID expired. */
  reenrolled: number;
  /** Devices locked out (SVID expired, no way back without a person), and of those within the budget. */
  lockouts: number;
  lockoutsWithinBudget: number;
}

export async function runFleetSimulation(o: SimulationOptions): Promise<SimulationOutput> {
  const svidTtlMs = o.svidTtlMs ?? HOUR;
  const fleet = await Fleet.create({
    gateways: o.gateways,
    devices: o.devices,
    dir: o.dir,
    seed: o.seed ?? 'fleet',
    svidTtlMs,
    ...(o.offlineBudgetMs === undefined ? {} : { deviceCaTtlMs: o.offlineBudgetMs }),
    ...(o.mqtt === undefined ? {} : { mqtt: o.mqtt }),
    ...(o.proxy === undefined ? {} : { proxy: o.proxy }),
  });
  const t0 = fleet.clock.now();
  const log = o.log ?? (() => {});
  const ctx = {
    random: seededRandom(`${o.seed ?? 'fleet'}/scenarios`),
    svidTtlMs,
    kills: o.kills ?? 100,
    log: (t: number, what: string) => log(`${((t - t0) / HOUR).toFixed(2).padStart(6)} h  ${what}`),
  };
  try {
    fleet.invariants.scenario = 'baseline';
    await fleet.runFor(svidTtlMs);
    for (const s of o.only === undefined ? SCENARIOS : [...SCENARIOS, ...BUDGET_SCENARIOS]) {
      if (o.only !== undefined && !o.only.some((n) => s.name.includes(n))) continue;
      fleet.invariants.scenario = s.name;
      ctx.log(fleet.clock.now(), `scenario: ${s.name}`);
      await s.run(fleet, ctx);
    }
    fleet.invariants.scenario = 'baseline';
    const end = t0 + o.hours * HOUR;
    if (fleet.clock.now() < end) await fleet.runFor(end - fleet.clock.now());
    await fleet.drainMqtt();
    const results = fleet.invariants.results();
    return {
      results,
      violations: fleet.invariants.violations,
      timeline: timelineTable(fleet.timeline, Math.max(30 * MIN, ((fleet.clock.now() - t0) / 48) | 0)),
      resultsText: resultsTable(results),
      svg: chartSvg(fleet.timeline, {
        gateways: o.gateways,
        devices:
          fleet.mqtt.length > 0
            ? fleet.mqtt.reduce((n, m) => n + m.devices.length, 0)
            : o.gateways * o.devices,
      }),
      rotations: fleet.rotations,
      proxy:
        fleet.link === undefined
          ? undefined
          : { calls: fleet.link.calls, failed: fleet.link.failed, connections: fleet.link.proxy.connections },
      kills: fleet.gateways.reduce((n, g) => n + g.kills, 0),
      virtualHours: (fleet.clock.now() - t0) / HOUR,
      qos:
        fleet.mqtt.length === 0
          ? undefined
          : fleet.mqtt.reduce(
              (a, m) => {
                const s = m.ledger.stats;
                return {
                  sent: a.sent + s.sent,
                  acked: a.acked + s.acked,
                  received: a.received + s.received,
                  duplicates: a.duplicates + s.duplicates,
                  lost: a.lost + s.lost,
                  sentConnected: a.sentConnected + s.sentConnected,
                  unacknowledged: a.unacknowledged + s.unacknowledged,
                  exempted: a.exempted + s.exempted,
                  lockouts: a.lockouts + m.lockouts.length,
                  lockoutsWithinBudget:
                    a.lockoutsWithinBudget +
                    m.lockouts.filter((l) => l.budgetEnd === undefined || l.at < l.budgetEnd).length,
                  brokerStarts: a.brokerStarts + m.brokerStarts,
                  connectedAtEnd: a.connectedAtEnd + m.connected,
                  publishers: a.publishers + m.publishers.length,
                  reenrolled: a.reenrolled + m.reenrolled,
                };
              },
              {
                sent: 0,
                acked: 0,
                received: 0,
                duplicates: 0,
                lost: 0,
                sentConnected: 0,
                unacknowledged: 0,
                exempted: 0,
                lockouts: 0,
                lockoutsWithinBudget: 0,
                brokerStarts: 0,
                connectedAtEnd: 0,
                publishers: 0,
                reenrolled: 0,
              },
            ),
    };
  } finally {
    await fleet.close();
  }
}
