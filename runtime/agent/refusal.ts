/**
 * What a failed exchange means for the next one (rotation.ts):
 * - `definitive`: the issuer refused for a cause no retry can cure — the gateway is revoked,
 *   disabled, or unknown to it. The agent stops and says so once; a person must act.
 * - `refused`: refused or rejected for a cause a retry may cure (PCR values no manifest describes
 *   yet, a quote or proof the issuer could not check, a session that expired, a consumed join
 *   token while another way remains, an issuer without the recovery endpoints): the next way is
 *   tried at once, then the agent backs off and tries again.
 * - `transient`: the upstream is away or overloaded (unreachable, 5xx, 429, garbage): back off.
 *
 * @example
 * ```ts
 * if (classifyFailure('renew', err) === 'definitive') halt();
 * ```
 */
import { isEdgewardError } from '../core/error.ts';
import type { IssuerErrorCode } from '../errors.ts';
import type { ExchangeMode } from './exchange.ts';

export type FailureKind = 'definitive' | 'refused' | 'transient';

/** The issuer's codes after which no retry can help without a person. */
export const DEFINITIVE_REFUSALS: ReadonlySet<IssuerErrorCode> = new Set<IssuerErrorCode>([
  'ERR_ISSUER_REVOKED',
  'ERR_ISSUER_GATEWAY_DISABLED',
  'ERR_ISSUER_NOT_REGISTERED',
]);

export function classifyFailure(mode: ExchangeMode, err: unknown): FailureKind {
  if (!isEdgewardError(err)) return 'transient';
  const remote = (err as { fields?: { remoteCode?: unknown } }).fields?.remoteCode;
  if (err.code === 'ERR_UPSTREAM_REFUSED')
    return typeof remote === 'string' && DEFINITIVE_REFUSALS.has(remote as IssuerErrorCode)
      ? 'definitive'
      : 'refused';
  // A rejected renewal or recovery (an expired session, an issuer without /v1/recover) may
  // succeed another way; a rejected attestation is retried after the backoff.
  if (err.code === 'ERR_UPSTREAM_REJECTED') return mode === 'attest' ? 'transient' : 'refused';
  return 'transient';
}
