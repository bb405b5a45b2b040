/**
 * The parts an `Issuer` (`issuer.ts`) is made of, built from its options: its CA set (`ca.ts`),
 * and the `IssuerCore` (`core.ts`) it gives its handler modules: defaults applied, the shared
 * steps (gateway usable, single-use session, per-gateway limit, issuance) bound to it.
 */
import type { Logger } from '../core/logger.ts';
import type { AuditLog } from './audit.ts';
import { DEFAULT_OFFLINE_BUDGET_MS, MAX_OFFLINE_BUDGET_MS } from './budget.ts';
import { CaSet } from './ca.ts';
import type { IssuerCore } from './core.ts';
import { checkGatewayUsable, checkName } from './gateways.ts';
import { issueIdentity } from './issue.ts';
import type { IssuerOptions } from './issuer-options.ts';
import type { JwtKeySet } from './jwt-keys.ts';
import type { RateLimiter } from './rate-limit.ts';
import type { ManifestRecord } from './records.ts';
import { limitGateway } from './request-guard.ts';
import type { Revocations } from './revocations.ts';
import { DEFAULT_SERVER_NAME_POLICY } from './server-names.ts';
import { newRenewSession, withSession } from './sessions.ts';

/** The default SVID lifetime. */
export const HOUR = 3_600_000;

/** The issuer's CAs from its options; the keys it owns are closed when it cannot open them. */
export async function openCaSet(
  o: IssuerOptions,
  jwtKeys: JwtKeySet,
  audit: AuditLog,
  svidTtl: number,
): Promise<CaSet> {
  return CaSet.open({
    jwtKeys,
    trustDomain: o.trustDomain,
    active: o.ca,
    ...(o.nextCa === undefined ? {} : { next: o.nextCa }),
    ...(o.nextCaSource === undefined ? {} : { nextSource: o.nextCaSource }),
    ...(o.caKeyFor === undefined ? {} : { keyFor: o.caKeyFor }),
    store: o.store,
    clock: o.clock,
    random: o.random,
    maxTtlMs: Math.max(svidTtl, MAX_OFFLINE_BUDGET_MS),
    onSwitched: ({ active, at }) => {
      void audit
        .write({
          event: 'ca',
          detail: `CA ${active} signs from ${new Date(at).toISOString()} (scheduled switch)`,
        })
        .catch((e: unknown) => o.logger?.error('audit write failed', { error: String(e) }));
    },
    ...(o.logger === undefined ? {} : { logger: o.logger }),
    ...(o.refreshHintSeconds === undefined ? {} : { refreshHintSeconds: o.refreshHintSeconds }),
  }).catch(async (err: unknown) => {
    for (const k of o.owned ?? []) await k.close();
    throw err;
  });
}

/** The core the handler modules get (`core.ts`). */
export function buildCore(
  o: IssuerOptions,
  log: Logger,
  audit: AuditLog,
  cas: CaSet,
  rev: Revocations,
  limits: RateLimiter,
  manifests: { get(): readonly ManifestRecord[]; set(list: readonly ManifestRecord[]): void },
): IssuerCore {
  const core: IssuerCore = {
    trustDomain: o.trustDomain,
    store: o.store,
    clock: o.clock,
    random: o.random,
    logger: log,
    audit,
    sessionTtlMs: o.sessionTtlMs ?? 5 * 60_000,
    svidTtlMs: o.svidTtlMs ?? HOUR,
    offlineBudgetMs: o.offlineBudgetMs ?? DEFAULT_OFFLINE_BUDGET_MS,
    methods: o.methods,
    serverNames: o.serverNames ?? DEFAULT_SERVER_NAME_POLICY,
    firmwareKeys: o.firmwareKeys ?? [],
    cas,
    revocations: rev,
    roots: () => cas.roots(),
    manifests: manifests.get,
    setManifests: manifests.set,
    isRevokedId: (id) => rev.isRevokedId(id),
    isRevokedSerial: (serial) => rev.isRevokedSerial(serial),
    checkGatewayUsable: (name) => checkGatewayUsable(core, name),
    withSession: (id, kind, fn, preread) => withSession(core, id, kind, fn, preread),
    newRenewSession: (gw, expiresAt) => newRenewSession(o.random, o.methods.tpm?.pcrSelection, gw, expiresAt),
    limitGateway: (name) => limitGateway({ o, limits }, name),
    limits: limits,
    checkName,
    issue: (...a) => issueIdentity(core, ...a),
  };
  return core;
}
