/**
 * The agent's status snapshot (`Agent.status()`): what it serves and until when, when it rotates
 * next, how the upstream is doing (state, breaker, last failure per endpoint), whether the clock
 * is trusted, and the sizes of its device, revocation and bundle state. The admin endpoint
 * renders it as a report and as Prometheus gauges (runtime/admin/).
 *
 * @example
 * ```ts
 * const s = agent.status();
 * if (s.upstream.state === 'failing') warn(s.upstream.lastError?.tried);
 * ```
 */
import type { ExchangeMode } from './exchange.ts';
import type { LiveIdentity } from './identity.ts';

/** The last failed exchange: its code, the underlying cause (`reason`) and each endpoint tried. */
export interface UpstreamFailure {
  readonly code: string;
  /** The issuer's own code (`ERR_ISSUER_*`) when it refused or rejected the request. */
  readonly remoteCode: string | undefined;
  readonly message: string;
  readonly at: number;
  readonly reason: string | undefined;
  readonly tried: readonly EndpointFailure[];
}

/** One endpoint's failure within an exchange. */
export interface EndpointFailure {
  readonly endpoint: string;
  readonly code: string;
  readonly reason: string | undefined;
}

/**
 * `refused`: refused definitively (revoked, disabled, unknown gateway; `lastError.remoteCode` says
 * which): no exchange until an operator acts. `failing`: transient failures or curable refusals.
 */
export type UpstreamState = 'unknown' | 'ok' | 'failing' | 'refused' | 'clock-untrusted';

export interface AgentStatus {
  readonly spiffeId: string | undefined;
  readonly serving: boolean;
  readonly svid: { notBefore: number; notAfter: number } | undefined;
  readonly deviceCa: { notBefore: number; notAfter: number } | undefined;
  readonly lastRotation: { at: number; via: ExchangeMode } | undefined;
  readonly nextRotation: number | undefined;
  readonly upstream: {
    readonly state: UpstreamState;
    readonly endpoint: string;
    readonly consecutiveFailures: number;
    readonly lastError: UpstreamFailure | undefined;
  };
  readonly breaker: { state: string; openUntil: number | undefined };
  readonly clock: { trusted: boolean; floor: number; now: number };
  readonly devices: number;
  readonly revocations: { sequence: number; entries: number };
  readonly bundleSequence: number | undefined;
  readonly cacheAgeMs: number | undefined;
  readonly store: { protector: string; dropped: number };
}

/** What the snapshot is read from, as the agent's parts hold it. */
export interface StatusParts {
  /** The loaded identity (valid or not), and the one served (valid only). */
  readonly loaded: LiveIdentity | undefined;
  readonly live: LiveIdentity | undefined;
  /** The identity whose delegated CA is still valid. */
  readonly ca: LiveIdentity | undefined;
  /** Effective time (never below the floor). */
  readonly now: number;
  readonly nextRotation: number | undefined;
  readonly upstream: AgentStatus['upstream'];
  readonly breaker: { readonly state: string; readonly openUntil: number };
  readonly clock: AgentStatus['clock'];
  /** NotAfter of every device SVID signed and not yet forgotten. */
  readonly deviceNotAfters: Iterable<number>;
  readonly revocations: AgentStatus['revocations'];
  readonly bundleSequence: number | undefined;
  readonly store: AgentStatus['store'];
}

export function statusSnapshot(p: StatusParts): AgentStatus {
  const { loaded, live, ca, now } = p;
  return {
    spiffeId: loaded?.svid.spiffeId,
    serving: live !== undefined,
    svid: live === undefined ? undefined : { notBefore: live.svidNotBefore, notAfter: live.svid.notAfter },
    deviceCa: ca === undefined ? undefined : { notBefore: ca.ca.notBefore, notAfter: ca.ca.notAfter },
    lastRotation: loaded === undefined ? undefined : { at: loaded.record.obtainedAt, via: loaded.record.via },
    nextRotation: p.nextRotation,
    upstream: p.upstream,
    breaker: {
      state: p.breaker.state,
      openUntil: p.breaker.state === 'closed' ? undefined : p.breaker.openUntil,
    },
    clock: p.clock,
    devices: [...p.deviceNotAfters].filter((na) => na > now).length,
    revocations: p.revocations,
    bundleSequence: p.bundleSequence,
    cacheAgeMs: loaded === undefined ? undefined : Math.max(0, now - loaded.record.obtainedAt),
    store: p.store,
  };
}
