/**
 * The upstream seam as the agent sees it: a list of endpoints, each able to POST and GET CBOR
 * on the paths of `protocol.ts`. `client.ts` implements it over HTTPS; tests of the rotation
 * logic can drive the agent through an in-memory endpoint, and integration tests through the
 * real issuer.
 *
 * Every failure is an `AgentError` whose code says what to do next (see `failover.ts`):
 * `ERR_UPSTREAM_UNREACHABLE` / `_UNAVAILABLE` / `_RATE_LIMITED` / `_PROTOCOL` → next endpoint,
 * `ERR_UPSTREAM_REFUSED` → refused for cause, `ERR_UPSTREAM_REJECTED` → our request was bad.
 */
import type { X509Svid } from '../sources/types.ts';

export interface CallOptions {
  /** Authenticate with this SVID (mTLS): renewal and the feeds. */
  readonly clientSvid?: X509Svid;
}

export interface UpstreamEndpoint {
  /** Base URL, e.g. `https://issuer-1.example:8443`. */
  readonly url: string;
  post<T>(path: string, body: unknown, options?: CallOptions): Promise<T>;
  get<T>(path: string, options?: CallOptions): Promise<T>;
}

export interface Upstream {
  readonly endpoints: readonly UpstreamEndpoint[];
  close(): Promise<void>;
}
