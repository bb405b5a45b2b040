/**
 * What every issuer request passes before its handler (`issuer.ts` routes here): the issuer is
 * open, a signing step finds the active CA's key, and the rate limits (per gateway for a request
 * with a gateway SVID, else per client address); then its outcome is observed (metrics) and a
 * refusal audited.
 */
import { isEdgewardError } from '../core/error.ts';
import type { Logger } from '../core/logger.ts';
import { IssuerError } from '../errors.ts';
import type { CaSet } from './ca.ts';
import type { IssuerCore, RequestContext } from './core.ts';
import type { IssuerOptions } from './issuer-options.ts';
import { peerGateway } from './peer.ts';
import type { RateLimiter } from './rate-limit.ts';
import type { AuditEvent } from './records.ts';

/** The requests that end in a signature by the active CA. */
const SIGNING_OPS = new Set(['attest.finish', 'renew.finish', 'recover.finish']);

/** What of the issuer the guard reads. */
export interface GuardState {
  readonly o: IssuerOptions;
  readonly log: Logger;
  readonly cas: CaSet;
  readonly limits: RateLimiter;
  readonly core: IssuerCore;
  readonly closed: () => boolean;
}

/** Runs request `op`'s handler `fn` behind the checks every request passes, and records its outcome. */
export async function guard<T>(
  g: GuardState,
  op: string,
  ctx: RequestContext,
  info: Partial<AuditEvent>,
  fn: () => Promise<T>,
): Promise<T> {
  const start = g.o.clock.now();
  const observe = (code: string) =>
    g.o.observe?.({ op, method: info.method ?? '', code, ms: g.o.clock.now() - start });
  try {
    if (g.closed()) throw new IssuerError('ERR_ISSUER_CLOSED', 'issuer is closed');
    // A replica without the active CA's key (a rotation it was not given the next key for)
    // refuses a signing step before it consumes the session: the client retries it, session
    // and all, on a replica that can sign (503 ERR_ISSUER_CA_INVALID; /readyz says why).
    if (SIGNING_OPS.has(op)) g.cas.activeKeyPair();
    // A request with a gateway SVID counts against that gateway (once: its handler does not
    // count it again), every other one against its client address.
    const gateway = peerGateway(g.core, ctx);
    if (gateway !== undefined) await limitGateway(g, gateway);
    else {
      const wait = await g.limits.take(`a:${ctx.address}`, g.o.rateLimit?.perAddress ?? 60);
      if (wait !== undefined)
        throw new IssuerError('ERR_ISSUER_RATE_LIMITED', 'too many requests from this address', {
          retryAfterMs: wait,
        });
    }
    const result = await fn();
    observe('ok');
    return result;
  } catch (err) {
    const code = isEdgewardError(err) ? err.code : 'ERR_ISSUER_INTERNAL';
    observe(code);
    if (!isEdgewardError(err)) g.log.error('issuer internal error', { op, error: String(err) });
    await g.core.audit
      .write({ ...info, event: 'refuse', code, address: ctx.address, detail: op })
      .catch((e: unknown) => g.log.error('audit write failed', { error: String(e) }));
    throw err;
  }
}

/** One request counted against gateway `name` (ERR_ISSUER_RATE_LIMITED past the limit). */
export async function limitGateway(g: Pick<GuardState, 'o' | 'limits'>, name: string): Promise<void> {
  await limit(g.limits, `g:${name}`, g.o.rateLimit?.perGateway ?? 10, `requests for gateway ${name}`);
}

/** One request counted against `key`, at most `max` per window. */
export async function limit(limits: RateLimiter, key: string, max: number, what: string): Promise<void> {
  const wait = await limits.take(key, max);
  if (wait !== undefined)
    throw new IssuerError('ERR_ISSUER_RATE_LIMITED', `too many ${what}`, { retryAfterMs: wait });
}
