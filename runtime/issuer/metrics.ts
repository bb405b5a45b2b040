/**
 * The issuer's Prometheus metrics (text format 0.0.4): requests by operation, attestation method
 * and outcome code (issuances, renewals, recoveries and every refusal by its code), a latency
 * histogram per operation, the active CA's NotAfter, the revocation sequence and the feed's lag
 * behind the store (sequence distance, and when the store was last read), a shared database's
 * connection pool (PostgreSQL: open, idle, waiting, max), in-flight requests, readiness, and
 * extra sources a composition root adds.
 *
 * @example
 * ```ts
 * const m = new IssuerMetrics();
 * const issuer = await Issuer.create({ ...o, observe: (e) => m.observe(e) });
 * m.render({ caNotAfterMs: issuer.caNotAfter, revocationSequence: issuer.revocationSequence });
 * ```
 */

import type { StorePoolStats } from './store.ts';

/** Latency buckets, seconds. */
export const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

interface Histogram {
  counts: number[];
  sum: number;
  count: number;
}

/** Label value escaping of the text format: backslash, double quote, newline. */
const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export interface MetricsSnapshot {
  readonly caNotAfterMs: number;
  readonly revocationSequence: number;
  readonly inFlight?: number;
  readonly ready?: boolean;
  /** A shared database's pool (PostgreSQL). */
  readonly pool?: StorePoolStats;
  /** The newest revocation sequence in the store (absent when the store did not answer). */
  readonly revocationStoreSequence?: number;
  /** When this replica last read the store's revocations (ms). */
  readonly revocationsRefreshedAtMs?: number;
  /** The JWT-SVID keys (`jwt-keys.ts`): published, whether the store names an active one, whether this replica signs. */
  readonly jwtKeys?: { readonly published: number; readonly active?: string; readonly signing: boolean };
}

const gauge = (out: string[], name: string, help: string, value: number): void => {
  out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`);
};

export class IssuerMetrics {
  readonly #requests = new Map<string, number>();
  readonly #latency = new Map<string, Histogram>();
  /** Extra metric families (complete text lines with HELP/TYPE), e.g. a database pool's. */
  readonly #extra: (() => string)[] = [];

  observe(e: { op: string; method: string; code: string; ms: number }): void {
    const key = `op="${esc(e.op)}",method="${esc(e.method)}",code="${esc(e.code)}"`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
    let h = this.#latency.get(e.op);
    if (h === undefined) {
      h = { counts: BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.#latency.set(e.op, h);
    }
    const s = Math.max(0, e.ms) / 1000;
    BUCKETS.forEach((b, i) => {
      if (s <= b) (h.counts[i] as number)++;
    });
    h.sum += s;
    h.count++;
  }

  /** Add a source of metric lines (a store's pool stats, a feed's lag). */
  addSource(render: () => string): void {
    this.#extra.push(render);
  }

  render(s: MetricsSnapshot): string {
    const out: string[] = [];
    out.push(
      '# HELP edgeward_issuer_requests_total Issuer requests by operation, attestation method and outcome code (ok or the refusal code).',
      '# TYPE edgeward_issuer_requests_total counter',
    );
    for (const [k, v] of this.#requests) out.push(`edgeward_issuer_requests_total{${k}} ${v}`);
    out.push(
      '# HELP edgeward_issuer_request_duration_seconds Issuer request latency by operation.',
      '# TYPE edgeward_issuer_request_duration_seconds histogram',
    );
    for (const [op, h] of this.#latency) {
      const l = `op="${esc(op)}"`;
      BUCKETS.forEach((b, i) => {
        out.push(`edgeward_issuer_request_duration_seconds_bucket{${l},le="${b}"} ${h.counts[i]}`);
      });
      out.push(`edgeward_issuer_request_duration_seconds_bucket{${l},le="+Inf"} ${h.count}`);
      out.push(`edgeward_issuer_request_duration_seconds_sum{${l}} ${h.sum}`);
      out.push(`edgeward_issuer_request_duration_seconds_count{${l}} ${h.count}`);
    }
    out.push(
      '# HELP edgeward_issuer_ca_not_after_seconds NotAfter of the active CA certificate (Unix seconds).',
      '# TYPE edgeward_issuer_ca_not_after_seconds gauge',
      `edgeward_issuer_ca_not_after_seconds ${Math.floor(s.caNotAfterMs / 1000)}`,
      '# HELP edgeward_issuer_revocation_sequence The latest revocation sequence this replica knows.',
      '# TYPE edgeward_issuer_revocation_sequence gauge',
      `edgeward_issuer_revocation_sequence ${s.revocationSequence}`,
    );
    if (s.revocationStoreSequence !== undefined) {
      gauge(
        out,
        'edgeward_issuer_revocation_store_sequence',
        'The newest revocation sequence in the store (committed by any replica).',
        s.revocationStoreSequence,
      );
      gauge(
        out,
        'edgeward_issuer_revocation_feed_lag',
        'Revocations in the store this replica has not applied yet (sequence distance; 0 when caught up).',
        Math.max(0, s.revocationStoreSequence - s.revocationSequence),
      );
    }
    if (s.revocationsRefreshedAtMs !== undefined)
      gauge(
        out,
        'edgeward_issuer_revocation_refreshed_seconds',
        "When this replica last read the store's revocations (Unix seconds).",
        s.revocationsRefreshedAtMs / 1000,
      );
    if (s.jwtKeys !== undefined) {
      gauge(
        out,
        'edgeward_issuer_jwt_keys_published',
        'JWT-SVID keys in the bundle now.',
        s.jwtKeys.published,
      );
      gauge(
        out,
        'edgeward_issuer_jwt_key_active',
        'The store names an active JWT-SVID key (0: no replica holds one; tokens are refused).',
        s.jwtKeys.active === undefined ? 0 : 1,
      );
      gauge(
        out,
        'edgeward_issuer_jwt_signing',
        'This replica signs JWT-SVIDs (holds the active key and its lease).',
        s.jwtKeys.signing ? 1 : 0,
      );
    }
    if (s.pool !== undefined) {
      gauge(
        out,
        'edgeward_issuer_store_pool_connections',
        "Database connections open in this replica's pool (idle and in use).",
        s.pool.total,
      );
      gauge(
        out,
        'edgeward_issuer_store_pool_idle_connections',
        'Idle database connections in the pool.',
        s.pool.idle,
      );
      gauge(
        out,
        'edgeward_issuer_store_pool_waiting_requests',
        'Store requests waiting for a database connection (the pool is exhausted).',
        s.pool.waiting,
      );
      gauge(
        out,
        'edgeward_issuer_store_pool_max_connections',
        'The pool size (store.postgres.poolSize).',
        s.pool.max,
      );
    }
    if (s.inFlight !== undefined)
      out.push(
        '# HELP edgeward_issuer_in_flight_requests HTTPS requests being served now.',
        '# TYPE edgeward_issuer_in_flight_requests gauge',
        `edgeward_issuer_in_flight_requests ${s.inFlight}`,
      );
    if (s.ready !== undefined)
      out.push(
        '# HELP edgeward_issuer_ready 1 when /readyz answers 200.',
        '# TYPE edgeward_issuer_ready gauge',
        `edgeward_issuer_ready ${s.ready ? 1 : 0}`,
      );
    for (const r of this.#extra) {
      const text = r().trimEnd();
      if (text !== '') out.push(text);
    }
    return `${out.join('\n')}\n`;
  }
}
