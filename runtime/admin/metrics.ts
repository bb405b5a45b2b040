/**
 * Prometheus text exposition (format 0.0.4) of the agent: counters (rotations, failures by
 * reason, device SVIDs, clock events) and gauges read from the status snapshot at scrape time
 * (seconds to expiry, cache age, devices, breaker, clock trust), and the upstream bridge's
 * counters when a bridge is configured (buffered, dropped oldest-first, forwarded), and the
 * broker's session journal (persistent sessions, queued QoS 1/2 messages, drops by the caps).
 * No identity material.
 *
 * @example
 * ```ts
 * res.end(renderMetrics(agent.status(), agent.counters));
 * ```
 */
import type { AgentStatus } from '../agent/agent.ts';
import { type Counters, labelText } from '../agent/metrics.ts';
import type { LocalServiceFacts } from './report.ts';

const HELP: Record<string, [type: 'counter' | 'gauge', help: string]> = {
  edgeward_rotations_total: ['counter', 'Identities obtained, by attestation or renewal'],
  edgeward_rotation_failures_total: ['counter', 'Failed rotations, by error code'],
  edgeward_feed_failures_total: ['counter', 'Failed revocation/bundle polls, by error code'],
  edgeward_device_svids_total: ['counter', 'Device SVIDs signed with the delegated CA'],
  edgeward_clock_jumps_total: ['counter', 'Forward clock jumps noticed'],
  edgeward_clock_untrusted_total: ['counter', 'Times the clock was found behind the time floor'],
  edgeward_svid_expiry_seconds: ['gauge', 'Seconds until the gateway SVID expires (absent when none)'],
  edgeward_device_ca_expiry_seconds: ['gauge', 'Seconds until the delegated device CA expires'],
  edgeward_cache_age_seconds: ['gauge', 'Age of the cached identity'],
  edgeward_serving: ['gauge', '1 when a valid gateway SVID is served'],
  edgeward_local_service_up: [
    'gauge',
    '1 while the broker and enrollment listener present a valid local server certificate',
  ],
  edgeward_offline_budget_remaining_seconds: [
    'gauge',
    'Seconds until the delegated CA expires and local service stops (the offline budget left)',
  ],
  edgeward_local_service_stops_at_seconds: [
    'gauge',
    'Unix time at which local service stops (the delegated CA NotAfter)',
  ],
  edgeward_devices: ['gauge', 'Devices holding an unexpired SVID from this gateway'],
  edgeward_breaker_open: ['gauge', '1 when the upstream circuit breaker is open'],
  edgeward_upstream_consecutive_failures: ['gauge', 'Consecutive upstream failures'],
  edgeward_clock_trusted: ['gauge', '0 when the clock is behind the time floor'],
  edgeward_revocation_sequence: ['gauge', 'Last revocation feed sequence applied'],
  edgeward_store_dropped_values: ['gauge', 'Stored values dropped for failing authentication since start'],
  edgeward_bridge_connected: ['gauge', '1 when the upstream bridge is connected to the cloud broker'],
  edgeward_bridge_buffered_messages: ['gauge', 'QoS 1 messages waiting in the bridge offline buffer'],
  edgeward_bridge_buffered_bytes: ['gauge', 'Payload bytes waiting in the bridge offline buffer'],
  edgeward_bridge_dropped_total: [
    'counter',
    'Buffered messages dropped (oldest first) to stay within bounds',
  ],
  edgeward_bridge_forwarded_total: ['counter', 'Messages forwarded to the cloud broker'],
  edgeward_bridge_reconnects_total: ['counter', 'Bridge reconnect attempts'],
  edgeward_mqtt_persistent_sessions: ['gauge', 'MQTT sessions (clean = false) kept across restarts'],
  edgeward_mqtt_queued_messages: ['gauge', 'QoS 1/2 messages queued or in flight for persistent sessions'],
  edgeward_mqtt_queued_bytes: ['gauge', 'Payload bytes queued for persistent sessions'],
  edgeward_mqtt_queue_dropped_total: [
    'counter',
    'Queued messages dropped (oldest first) by the per-session and total caps',
  ],
  edgeward_mqtt_journal_corrupt_total: ['counter', 'Session journal entries dropped at start: undecodable'],
  edgeward_mqtt_refusals_total: [
    'counter',
    'CONNECT, PUBLISH and SUBSCRIBE refusals by the broker, by typed code (e.g. ERR_MQTT_RETAINED_CAP)',
  ],
  edgeward_mqtt_retained_messages: ['gauge', 'Retained messages the broker holds'],
  edgeward_mqtt_retained_bytes: ['gauge', 'Payload bytes of the retained messages the broker holds'],
  edgeward_mqtt_retained_dropped_at_start_total: [
    'counter',
    'Retained messages dropped at start because the restored store exceeded a cap',
  ],
};

/**
 * The agent's counters that appear at 0 before their first event, so dashboards see them from the
 * first scrape (not the failure counters, labelled by reason; the bridge and journal ones come
 * with their source).
 */
const ZERO_AT_START = [
  'edgeward_rotations_total',
  'edgeward_device_svids_total',
  'edgeward_clock_jumps_total',
  'edgeward_clock_untrusted_total',
] as const;

/** The broker's session journal counters (transport/mqtt/persistence `PersistenceStats`). */
export interface JournalCounters {
  readonly sessions: number;
  readonly queued: number;
  readonly queuedBytes: number;
  readonly dropped: number;
  readonly corrupt: number;
}

/** The broker's refusals by code and its retained store (transport/mqtt `Broker.refusals()`, `retainedStats()`). */
export interface BrokerCounters {
  readonly refusals: Readonly<Partial<Record<string, number>>>;
  readonly retained: { readonly count: number; readonly bytes: number; readonly droppedAtStart: number };
}

/** The bridge counters (transport/bridge `BridgeStats`), as the admin endpoint sees them. */
export interface BridgeCounters {
  readonly connected: boolean;
  readonly buffered: number;
  readonly bufferedBytes: number;
  readonly dropped: number;
  readonly forwarded: number;
  readonly reconnects: number;
}

export function renderMetrics(
  s: AgentStatus,
  counters: Counters,
  bridge?: BridgeCounters,
  journal?: JournalCounters,
  local?: LocalServiceFacts,
  broker?: BrokerCounters,
): string {
  const now = s.clock.now;
  const gauges: [string, number | undefined][] = [
    ['edgeward_svid_expiry_seconds', s.svid && (s.svid.notAfter - now) / 1000],
    ['edgeward_device_ca_expiry_seconds', s.deviceCa && (s.deviceCa.notAfter - now) / 1000],
    ['edgeward_cache_age_seconds', s.cacheAgeMs === undefined ? undefined : s.cacheAgeMs / 1000],
    ['edgeward_serving', s.serving ? 1 : 0],
    ['edgeward_devices', s.devices],
    ['edgeward_breaker_open', s.breaker.state === 'open' ? 1 : 0],
    ['edgeward_upstream_consecutive_failures', s.upstream.consecutiveFailures],
    ['edgeward_clock_trusted', s.clock.trusted ? 1 : 0],
    ['edgeward_revocation_sequence', s.revocations.sequence],
    ['edgeward_store_dropped_values', s.store.dropped],
    ...(bridge === undefined
      ? []
      : ([
          ['edgeward_bridge_connected', bridge.connected ? 1 : 0],
          ['edgeward_bridge_buffered_messages', bridge.buffered],
          ['edgeward_bridge_buffered_bytes', bridge.bufferedBytes],
          ['edgeward_bridge_dropped_total', bridge.dropped],
          ['edgeward_bridge_forwarded_total', bridge.forwarded],
          ['edgeward_bridge_reconnects_total', bridge.reconnects],
        ] as [string, number][])),
    ...(local === undefined
      ? []
      : ([
          ['edgeward_local_service_up', local.up ? 1 : 0],
          [
            'edgeward_offline_budget_remaining_seconds',
            local.budgetRemainingMs === undefined ? undefined : local.budgetRemainingMs / 1000,
          ],
          [
            'edgeward_local_service_stops_at_seconds',
            local.stopsAt === undefined ? undefined : local.stopsAt / 1000,
          ],
        ] as [string, number | undefined][])),
    ...(journal === undefined
      ? []
      : ([
          ['edgeward_mqtt_persistent_sessions', journal.sessions],
          ['edgeward_mqtt_queued_messages', journal.queued],
          ['edgeward_mqtt_queued_bytes', journal.queuedBytes],
          ['edgeward_mqtt_queue_dropped_total', journal.dropped],
          ['edgeward_mqtt_journal_corrupt_total', journal.corrupt],
        ] as [string, number][])),
  ];
  const series = new Map<string, string[]>();
  const add = (name: string, line: string) => {
    const list = series.get(name) ?? [];
    list.push(line);
    series.set(name, list);
  };
  for (const [name, labels, v] of counters.series()) add(name, `${name}${labels} ${v}`);
  for (const [name, v] of gauges) if (v !== undefined) add(name, `${name}${labelText({})} ${round(v)}`);
  if (broker !== undefined) {
    for (const [code, n] of Object.entries(broker.refusals).sort(([a], [b]) => (a < b ? -1 : 1)))
      if (n !== undefined)
        add('edgeward_mqtt_refusals_total', `edgeward_mqtt_refusals_total${labelText({ code })} ${n}`);
    add('edgeward_mqtt_retained_messages', `edgeward_mqtt_retained_messages ${broker.retained.count}`);
    add('edgeward_mqtt_retained_bytes', `edgeward_mqtt_retained_bytes ${broker.retained.bytes}`);
    add(
      'edgeward_mqtt_retained_dropped_at_start_total',
      `edgeward_mqtt_retained_dropped_at_start_total ${broker.retained.droppedAtStart}`,
    );
  }
  for (const name of ZERO_AT_START) if (!series.has(name)) add(name, `${name} 0`);
  const out: string[] = [];
  for (const [name, lines] of series) {
    const [type, help] = HELP[name] ?? ['untyped', name];
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
  }
  return `${out.join('\n')}\n`;
}

const round = (v: number): string => String(Math.round(v * 1000) / 1000);
