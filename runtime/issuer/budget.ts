/**
 * The offline budget: the delegated device CA's lifetime, i.e. how long a gateway keeps serving
 * its devices without the issuer. The issuer config sets it for all (`offlineBudget`, default 7d,
 * at most 30d); an operator may set it per gateway (`edgeward issuer gateway budget NAME D`),
 * stored in the gateway record. A CA is issued for min(budget, what is left of the issuer CA)
 * (the signer clamps to its own NotAfter). The record also keeps the serials of the delegated CAs
 * issued to the gateway while they are valid: recovery (`recover.ts`) admits only those.
 *
 * @example
 * ```ts
 * const notAfter = now + budgetFor(gw, configuredMs);
 * const next = { ...gw, deviceCas: withDeviceCa(gw, { serial, notAfter }, now) };
 * ```
 */
import { MAX_OFFLINE_BUDGET_MS } from '../config/issuer-bounds.ts';
import { IssuerError } from '../errors.ts';
import type { GatewayRecord } from './records.ts';

export { DEFAULT_OFFLINE_BUDGET_MS, MAX_OFFLINE_BUDGET_MS } from '../config/issuer-bounds.ts';

/** The gateway's budget: the operator's override, else the configured one. */
export function budgetFor(gw: Pick<GatewayRecord, 'offlineBudgetMs'>, configuredMs: number): number {
  return gw.offlineBudgetMs ?? configuredMs;
}

/** An operator's per-gateway budget: > 0, at most 30d, and not shorter than the gateway SVID. */
export function checkBudgetOverride(ms: number, svidTtlMs: number): void {
  if (!Number.isSafeInteger(ms) || ms <= 0 || ms > MAX_OFFLINE_BUDGET_MS)
    throw new IssuerError('ERR_ISSUER_BAD_REQUEST', 'an offline budget must be > 0 and at most 30d');
  if (ms < svidTtlMs)
    throw new IssuerError(
      'ERR_ISSUER_BAD_REQUEST',
      `an offline budget of ${ms} ms is shorter than the gateway SVID (${svidTtlMs} ms): the SVID must fit inside its delegated CA`,
    );
}

/** The gateway's recorded delegated CAs still valid at `now`, with `added` (bounded: at most 16 kept). */
export function withDeviceCa(
  gw: Pick<GatewayRecord, 'deviceCas'>,
  added: { serial: string; notAfter: number } | undefined,
  now: number,
): { serial: string; notAfter: number }[] {
  const live = (gw.deviceCas ?? []).filter((c) => c.notAfter > now);
  return (added === undefined ? live : [...live, added]).slice(-16);
}
