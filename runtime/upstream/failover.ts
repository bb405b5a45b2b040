/**
 * Failover across upstream endpoints: a call goes to the endpoint that last worked, and on a
 * failure that another endpoint might not share (unreachable, 5xx, rate limited, garbage) moves
 * on to the next, in order, until each has been tried once. A refusal for cause or a rejected
 * request is final: another issuer of the same fleet would say the same. An endpoint whose
 * replica went away mid-request (connection reset, 503 ERR_ISSUER_DRAINING) gets one more try
 * after the others: behind a load balancer the same URL reaches another replica next time, so a
 * single-URL upstream survives a rolling restart within one attempt too.
 *
 * @example
 * ```ts
 * const failover = new Failover(upstream);
 * const issued = await failover.run((ep) => renewOn(ep));
 * failover.current; // the URL that answered
 * ```
 */
import { isEdgewardError } from '../core/error.ts';
import type { Upstream, UpstreamEndpoint } from './types.ts';

const FAILOVER_CODES = new Set([
  'ERR_UPSTREAM_UNREACHABLE',
  'ERR_UPSTREAM_UNAVAILABLE',
  'ERR_UPSTREAM_RATE_LIMITED',
  'ERR_UPSTREAM_PROTOCOL',
]);

/** `fields.reason` of an upstream failure (the network/TLS/HTTP cause, see client.ts), when it has one. */
export function upstreamReason(err: unknown): string | undefined {
  const reason = (err as { fields?: { reason?: unknown } } | null)?.fields?.reason;
  return typeof reason === 'string' ? reason : undefined;
}

/** The replica behind the endpoint went away mid-request: the same URL may reach another one. */
export function replicaGone(err: unknown): boolean {
  const f = (err as { fields?: { reason?: unknown; remoteCode?: unknown } } | null)?.fields;
  return f?.reason === 'ECONNRESET' || f?.reason === 'EPIPE' || f?.remoteCode === 'ERR_ISSUER_DRAINING';
}

/** True when trying another endpoint may help. */
export function shouldFailOver(err: unknown): boolean {
  return isEdgewardError(err) && FAILOVER_CODES.has(err.code);
}

export class Failover {
  readonly #upstream: Upstream;
  #preferred = 0;

  constructor(upstream: Upstream) {
    if (upstream.endpoints.length === 0) throw new TypeError('upstream needs at least one endpoint');
    this.#upstream = upstream;
  }

  /** URL of the endpoint that will be tried first. */
  get current(): string {
    return (this.#upstream.endpoints[this.#preferred] as UpstreamEndpoint).url;
  }

  /** Run `fn` on one endpoint after another until one succeeds or a failure is final. */
  async run<T>(
    fn: (endpoint: UpstreamEndpoint) => Promise<T>,
    onFailover?: (url: string, err: unknown) => void,
  ): Promise<T> {
    const eps = this.#upstream.endpoints;
    let last: unknown;
    const order = eps.map((_, i) => (this.#preferred + i) % eps.length);
    for (let n = 0; n < order.length; n++) {
      const at = order[n] as number;
      const ep = eps[at] as UpstreamEndpoint;
      try {
        const out = await fn(ep);
        this.#preferred = at;
        return out;
      } catch (err) {
        if (!shouldFailOver(err)) throw err;
        last = err;
        onFailover?.(ep.url, err);
        // One more try, after the others, for an endpoint whose replica went away mid-request.
        if (n < eps.length && replicaGone(err)) order.push(at);
      }
    }
    // All failed: start with the next one on the following attempt.
    this.#preferred = (this.#preferred + 1) % eps.length;
    throw last;
  }
}
