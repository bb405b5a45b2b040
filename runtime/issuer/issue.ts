/**
 * The issuance every attestation, renewal and recovery ends in: sign the gateway SVID (never
 * past the offline budget) and, when a CA key was sent, the delegated device CA
 * (`device-ca.ts`); then one atomic batch: the gateway record, the issued records, what the
 * caller consumed or registered, the next renewal session and the audit event.
 */
import { gatewayId } from '../spiffe/id.ts';
import type { IssuedIdentity } from '../upstream/protocol.ts';
import { budgetFor, withDeviceCa } from './budget.ts';
import type { AuditInfo, IssuerCore, RequestContext } from './core.ts';
import { signDeviceCa } from './device-ca.ts';
import { type GatewayRecord, type IssuedRecord, K } from './records.ts';
import type { StoreOp } from './store.ts';

export async function issueIdentity(
  core: IssuerCore,
  gw: GatewayRecord,
  spki: Buffer,
  /** Undefined on a renewal without caCsr: the delegated CA is not re-signed. */
  caSpki: Buffer | undefined,
  serverNames: readonly string[],
  event: 'issue' | 'renew' | 'recover',
  extraOps: StoreOp[],
  ctx: RequestContext,
  info: AuditInfo,
): Promise<IssuedIdentity> {
  const now = core.clock.now();
  const spiffeId = gatewayId(core.trustDomain, gw.name);
  const signer = core.cas.signer;
  const notBefore = now - 30_000;
  const budget = budgetFor(gw, core.offlineBudgetMs);
  const sp = signer.issue({
    profile: 'svid',
    spiffeId,
    spki,
    notBefore,
    // The gateway SVID never outlives the budget (an override is never shorter than svidTtl
    // when set, but svidTtl may have grown since).
    notAfter: now + Math.min(core.svidTtlMs, budget),
    serverNames,
  });
  const dp =
    caSpki === undefined
      ? undefined
      : signDeviceCa(signer, { spiffeId, caSpki, notBefore, notAfter: now + budget, serverNames });
  core.cas.noteSigned(Math.max(sp.notAfter, dp?.notAfter ?? 0));
  const renewal = core.newRenewSession(gw, sp.notAfter);
  const record: GatewayRecord = {
    ...gw,
    maxNotAfter: Math.max(gw.maxNotAfter, sp.notAfter, dp?.notAfter ?? 0),
    lastIssuedAt: now,
    deviceCas: withDeviceCa(gw, dp && { serial: dp.serialHex, notAfter: dp.notAfter }, now),
  };
  const issued = (kind: IssuedRecord['kind'], notAfter: number): IssuedRecord => ({
    spiffeId,
    gateway: gw.name,
    kind,
    notAfter,
  });
  await core.store.batch([
    ...extraOps,
    { type: 'put', key: K.gateway(gw.name), value: record },
    { type: 'put', key: K.issued(sp.serialHex), value: issued('svid', sp.notAfter) },
    ...(dp === undefined
      ? []
      : [{ type: 'put' as const, key: K.issued(dp.serialHex), value: issued('device-ca', dp.notAfter) }]),
    { type: 'put', key: K.session(renewal.id), value: renewal },
    core.audit.op({
      ...info,
      event,
      method: gw.method,
      gateway: gw.name,
      spiffeId,
      serials: dp === undefined ? [sp.serialHex] : [sp.serialHex, dp.serialHex],
      address: ctx.address,
      ...(gw.firmware === undefined ? {} : { detail: `firmware ${gw.firmware}` }),
    }),
  ]);
  return {
    spiffeId,
    svidChain: [sp.der],
    deviceCaChain: dp === undefined ? [] : [dp.der],
    bundle: core.cas.bundleJson(),
    bundleSequence: core.cas.sequence,
    nextNonce: renewal.nonce,
    nextSessionId: renewal.id,
  };
}
