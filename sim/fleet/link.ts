/**
 * The network between the simulated gateways and the one issuer: an in-process `Upstream`
 * (runtime/upstream/types.ts) that hands requests to the real `Issuer` through the same CBOR
 * codec as the HTTPS front, and maps its typed refusals to the agent's error codes with the
 * product's own tables: the front's code → status (`statusFor`) and the client's status → code
 * (`codeForStatus`). Faults are set per gateway or for everyone:
 * - `issuerDown`: every call fails with ERR_UPSTREAM_UNREACHABLE (connection refused);
 * - `partition(name, 'drop')`: that gateway's calls fail unreachable;
 * - `partition(name, 'delay', ms)`: that gateway's answers arrive `ms` later on the clock.
 * - `partition(name, 'blackhole')`: calls get no answer and fail at the client's timeout.
 * A gateway can instead be given a real link (`attachLink`, https-link.ts): its calls go over
 * HTTPS through a loopback TCP proxy, and its partitions are the proxy's modes (drop = refuse).
 *
 * @example
 * ```ts
 * const net = new FleetNetwork(() => issuer, clock);
 * const upstream = net.upstreamFor('gw-3');
 * net.partition('gw-3', 'drop');
 * ```
 */
import type { Clock } from '../../runtime/core/clock.ts';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { AgentError, type AgentErrorCode, IssuerError } from '../../runtime/errors.ts';
import { statusFor } from '../../runtime/issuer/http.ts';
import type { Issuer } from '../../runtime/issuer/issuer.ts';
import { issuerCbor } from '../../runtime/issuer/store.ts';
import { codeForStatus } from '../../runtime/upstream/client.ts';
import { PATHS } from '../../runtime/upstream/protocol.ts';
import type { CallOptions, Upstream, UpstreamEndpoint } from '../../runtime/upstream/types.ts';
import type { HttpsLink } from './https-link.ts';

/** The agent-side code for an issuer refusal: what the HTTPS front's status would have said. */
export function agentCodeFor(issuerCode: string): AgentErrorCode {
  return codeForStatus(statusFor(issuerCode));
}

export type LinkFault =
  | { kind: 'ok' }
  | { kind: 'drop' }
  | { kind: 'blackhole' }
  | { kind: 'delay'; ms: number };

/** Counters of what crossed the network, for the results table. */
export interface NetworkStats {
  calls: number;
  failed: number;
  refused: number;
}

export class FleetNetwork {
  issuerDown = false;
  readonly stats: NetworkStats = { calls: 0, failed: 0, refused: 0 };
  readonly #issuer: () => Issuer;
  readonly #clock: Clock;
  readonly #faults = new Map<string, LinkFault>();
  readonly #links = new Map<string, HttpsLink>();

  constructor(issuer: () => Issuer, clock: Clock) {
    this.#issuer = issuer;
    this.#clock = clock;
  }

  partition(gateway: string, kind: LinkFault['kind'], ms = 0): void {
    this.#faults.set(gateway, kind === 'delay' ? { kind, ms } : { kind });
    const link = this.#links.get(gateway);
    if (link !== undefined)
      link.proxy.set(
        kind === 'ok'
          ? { kind: 'pass' }
          : kind === 'drop'
            ? { kind: 'refuse' }
            : kind === 'delay'
              ? { kind, ms }
              : { kind },
      );
  }

  /** This gateway talks to the issuer over a real HTTPS link (through its TCP proxy). */
  attachLink(gateway: string, link: HttpsLink): void {
    this.#links.set(gateway, link);
  }

  /** Whether the gateway's faults are real sockets (the TCP proxy) rather than in-process. */
  isReal(gateway: string): boolean {
    return this.#links.has(gateway);
  }

  faultOf(gateway: string): LinkFault {
    return this.#faults.get(gateway) ?? { kind: 'ok' };
  }

  /** An upstream for one incarnation of a gateway; `alive()` false = the process is dead. */
  upstreamFor(gateway: string, alive: () => boolean = () => true, gwClock?: Clock): Upstream {
    const link = this.#links.get(gateway);
    if (link !== undefined) return link.upstream(gwClock ?? this.#clock, alive);
    const url = `sim://issuer/${gateway}`;
    const call = async <T>(path: string, body: unknown, opts: CallOptions = {}): Promise<T> => {
      if (!alive()) return new Promise<T>(() => {}); // a dead process never sees an answer
      this.stats.calls++;
      const fault = this.faultOf(gateway);
      const unreachable = (why: string): AgentError => {
        this.stats.failed++;
        return new AgentError('ERR_UPSTREAM_UNREACHABLE', `${url}${path}: ${why}`, { endpoint: url, path });
      };
      if (this.issuerDown) throw unreachable('connection refused (issuer down)');
      if (fault.kind === 'drop') throw unreachable('no route (partitioned)');
      if (fault.kind === 'blackhole') {
        // No answer: the call fails when the client's timeout (10 s) passes.
        await new Promise<void>((resolve) => this.#clock.setTimer('link-blackhole', 10_000, resolve));
        if (!alive()) return new Promise<T>(() => {});
        throw unreachable('no answer within 10000 ms (black hole)');
      }
      const ctx = {
        address: gateway,
        ...(opts.clientSvid === undefined
          ? {}
          : { peerCertificate: opts.clientSvid.chain[0]?.raw as Buffer }),
      };
      // Through the wire codec in both directions, as over HTTPS.
      const wireBody = issuerCbor.decode(Buffer.from(issuerCbor.encode(body ?? {})));
      let answer: unknown;
      try {
        answer = await this.#route(path, wireBody, ctx);
      } catch (err) {
        if (!isEdgewardError(err)) throw err;
        this.stats.refused++;
        throw new AgentError(agentCodeFor(err.code), `${url}${path}: ${err.code} ${err.message}`, {
          endpoint: url,
          path,
          remoteCode: err.code,
        });
      }
      if (fault.kind === 'delay') {
        await new Promise<void>((resolve) => this.#clock.setTimer('link-delay', fault.ms, resolve));
        if (!alive()) return new Promise<T>(() => {});
        if (this.issuerDown || this.faultOf(gateway).kind === 'drop') throw unreachable('connection lost');
      }
      return issuerCbor.decode(Buffer.from(issuerCbor.encode(answer))) as T;
    };
    const endpoint: UpstreamEndpoint = {
      url,
      post: (path, body, opts) => call(path, body, opts),
      get: (path, opts) => call(path, undefined, opts),
    };
    return { endpoints: [endpoint], close: async () => {} };
  }

  async #route(
    path: string,
    body: unknown,
    ctx: { address: string; peerCertificate?: Buffer },
  ): Promise<unknown> {
    const issuer = this.#issuer();
    const url = new URL(path, 'sim://issuer');
    switch (url.pathname) {
      case PATHS.attestBegin:
        return issuer.attestBegin(body, ctx);
      case PATHS.attestFinish:
        return issuer.attestFinish(body, ctx);
      case PATHS.renewBegin:
        return issuer.renewBegin(ctx);
      case PATHS.renewFinish:
        return issuer.renewFinish(body, ctx);
      case PATHS.bundle:
        return issuer.bundle().json;
      case PATHS.revocations:
        return issuer.revocationFeed(Number(url.searchParams.get('since') ?? '0'));
      default:
        throw new IssuerError('ERR_ISSUER_NOT_FOUND', `no route ${path}`); // as the HTTPS front answers
    }
  }
}
