/**
 * The status document served at `GET /v1/status` and printed by `edgeward status`: the agent's
 * snapshot with times as ISO 8601, plus what the composition root knows (broker listeners, store
 * size). `renderStatus` turns it into the human table.
 *
 * @example
 * ```ts
 * const doc = statusReport(agent.status(), { broker: { mqtt: '127.0.0.1:8883' }, store: await store.stats() });
 * console.log(renderStatus(doc));
 * ```
 */
import type { AgentStatus } from '../agent/agent.ts';
import type { BridgeCounters } from './metrics.ts';

export interface StatusReport {
  gateway: { spiffeId: string | null; serving: boolean };
  svid: { notBefore: string; notAfter: string } | null;
  deviceCa: { notBefore: string; notAfter: string } | null;
  rotation: { last: string | null; lastVia: string | null; next: string | null };
  upstream: {
    state: string;
    endpoint: string;
    consecutiveFailures: number;
    lastError: {
      code: string;
      message: string;
      at: string;
      /** The underlying cause: ECONNREFUSED, CERT_HAS_EXPIRED, timeout, HTTP 503, ... */
      reason: string | undefined;
      tried: readonly { endpoint: string; code: string; reason: string | undefined }[];
    } | null;
  };
  breaker: { state: string; openUntil: string | null };
  clock: { trusted: boolean; floor: string; now: string };
  broker: {
    /** `none` (no broker configured), `starting` (waiting for a valid SVID), `serving`, `failed`. */
    state: BrokerState['state'];
    /** Why the broker failed to start (its typed code), when `failed`. */
    error: { code: string; message: string } | null;
    listeners: { name: string; address: string }[];
    bridge: BridgeCounters | null;
  };
  store: { protector: string; values: number; bytes: number; dropped: number };
  devices: number;
  revocations: { sequence: number; entries: number };
  bundleSequence: number | null;
  /** Local service (broker, enrollment, device renewal) under the delegated CA: up, and when it stops. */
  local: {
    up: boolean;
    /** The delegated CA's NotAfter: local service stops then (the offline budget's end). */
    stopsAt: string | null;
    budgetRemainingSeconds: number | null;
    serverCertNotAfter: string | null;
  } | null;
  /** The Workload API socket, when the Workload API runs (`workload` in the config, or dev mode). */
  workloadApi: { socket: string } | null;
}

/** What the composition root knows of local service (`runtime/agent/server-identity.ts`). */
export interface LocalServiceFacts {
  readonly up: boolean;
  readonly certNotAfter: number | undefined;
  readonly stopsAt: number | undefined;
  readonly budgetRemainingMs: number | undefined;
}

/** The broker as the composition root knows it. */
export type BrokerState =
  | { readonly state: 'none' | 'starting' | 'serving' }
  | { readonly state: 'failed'; readonly error: { readonly code: string; readonly message: string } };

/** False when something the agent should run is not running: `edgeward status` exits 1. */
export function healthy(r: StatusReport): boolean {
  return r.gateway.serving && r.broker.state !== 'failed';
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

export function statusReport(
  s: AgentStatus,
  extra: {
    listeners: { name: string; address: string }[];
    store: { values: number; bytes: number };
    bridge?: BridgeCounters | undefined;
    local?: LocalServiceFacts | undefined;
    broker?: BrokerState;
    workloadApi?: { socket: string } | undefined;
  },
): StatusReport {
  const local = extra.local;
  const broker = extra.broker ?? { state: extra.listeners.length > 0 ? 'serving' : 'none' };
  return {
    gateway: { spiffeId: s.spiffeId ?? null, serving: s.serving },
    svid: s.svid
      ? { notBefore: iso(s.svid.notBefore) as string, notAfter: iso(s.svid.notAfter) as string }
      : null,
    deviceCa: s.deviceCa
      ? { notBefore: iso(s.deviceCa.notBefore) as string, notAfter: iso(s.deviceCa.notAfter) as string }
      : null,
    rotation: {
      last: iso(s.lastRotation?.at),
      lastVia: s.lastRotation?.via ?? null,
      next: iso(s.nextRotation),
    },
    upstream: {
      state: s.upstream.state,
      endpoint: s.upstream.endpoint,
      consecutiveFailures: s.upstream.consecutiveFailures,
      lastError: s.upstream.lastError
        ? { ...s.upstream.lastError, at: iso(s.upstream.lastError.at) as string }
        : null,
    },
    breaker: { state: s.breaker.state, openUntil: iso(s.breaker.openUntil) },
    clock: { trusted: s.clock.trusted, floor: iso(s.clock.floor) as string, now: iso(s.clock.now) as string },
    broker: {
      state: broker.state,
      error: broker.state === 'failed' ? { ...broker.error } : null,
      listeners: extra.listeners,
      bridge: extra.bridge ?? null,
    },
    store: { protector: s.store.protector, ...extra.store, dropped: s.store.dropped },
    devices: s.devices,
    revocations: s.revocations,
    bundleSequence: s.bundleSequence ?? null,
    workloadApi: extra.workloadApi === undefined ? null : { socket: extra.workloadApi.socket },
    local:
      local === undefined
        ? null
        : {
            up: local.up,
            stopsAt: iso(local.stopsAt),
            budgetRemainingSeconds:
              local.budgetRemainingMs === undefined ? null : Math.floor(local.budgetRemainingMs / 1000),
            serverCertNotAfter: iso(local.certNotAfter),
          },
  };
}

/** The human table: one `label  value` line per fact, expiries with time left. */
export function renderStatus(r: StatusReport, nowMs: number): string {
  const left = (t: string | null | undefined): string => {
    if (t === null || t === undefined) return '-';
    const s = Math.round((Date.parse(t) - nowMs) / 1000);
    const span =
      Math.abs(s) >= 3600 ? `${(Math.abs(s) / 3600).toFixed(1)} h` : `${Math.round(Math.abs(s) / 60)} min`;
    return `${t}  (${s >= 0 ? `in ${span}` : `${span} ago`})`;
  };
  const rows: [string, string][] = [
    ['gateway', r.gateway.spiffeId ?? '(no identity yet)'],
    [
      'serving',
      !r.gateway.serving
        ? 'NO: no valid SVID'
        : r.broker.state === 'failed'
          ? `NO: the broker failed to start (${r.broker.error?.code ?? '?'})`
          : 'yes',
    ],
    [
      'broker',
      r.broker.state === 'failed' && r.broker.error !== null
        ? `FAILED: ${r.broker.error.code}: ${r.broker.error.message}`
        : r.broker.state,
    ],
    ['svid expires', left(r.svid?.notAfter)],
    ['device CA expires', left(r.deviceCa?.notAfter)],
    ['last rotation', r.rotation.last ? `${left(r.rotation.last)} via ${r.rotation.lastVia}` : '-'],
    ['next rotation', left(r.rotation.next)],
    ['upstream', `${r.upstream.state} (${r.upstream.endpoint})`],
    [
      'last error',
      r.upstream.lastError
        ? `${r.upstream.lastError.code}${r.upstream.lastError.reason ? ` (${r.upstream.lastError.reason})` : ''} ${r.upstream.lastError.at}`
        : '-',
    ],
    ['breaker', r.breaker.state + (r.breaker.openUntil ? ` until ${r.breaker.openUntil}` : '')],
    ...(r.local === null || r.local === undefined
      ? []
      : ([
          [
            'local service',
            r.local.up
              ? `up until ${left(r.local.stopsAt)}`
              : r.local.stopsAt !== null && (r.local.budgetRemainingSeconds ?? 0) <= 0
                ? `STOPPED: offline budget ended ${left(r.local.stopsAt)}`
                : 'DOWN: no valid delegated CA',
          ],
        ] as [string, string][])),
    ['clock', r.clock.trusted ? 'trusted' : `UNTRUSTED: behind the time floor ${r.clock.floor}`],
    ...r.broker.listeners.map((l): [string, string] => [`broker ${l.name}`, l.address]),
    ...(r.broker.bridge === null
      ? []
      : [
          [
            'bridge',
            `${r.broker.bridge.connected ? 'connected' : 'DISCONNECTED'}, ${r.broker.bridge.buffered} buffered, ${r.broker.bridge.dropped} dropped, ${r.broker.bridge.forwarded} forwarded`,
          ] as [string, string],
        ]),
    [
      'store',
      `${r.store.values} values, ${r.store.bytes} bytes, key ${r.store.protector}, ${r.store.dropped} dropped`,
    ],
    ['devices', String(r.devices)],
    ['revocations', `${r.revocations.entries} (sequence ${r.revocations.sequence})`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}
