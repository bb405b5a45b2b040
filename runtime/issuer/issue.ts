/**
 * The issuance every attestation, renewal and recovery ends in: sign the gateway SVID (never
 * past the offline budget) and, when a CA key was sent, the delegated device CA
 * (`device-ca.ts`); then one atomic batch: the gateway record, the issued records, what the
 * caller consumed or registered, the next renewal session and the audit event. The gateway
 * record is written under a version precondition and what the caller consumes carries a
 * `present` precondition, so of N replicas racing on one token exactly one issues.
 */

import { IssuerError } from '../errors.ts';
import { gatewayId } from '../spiffe/id.ts';
import type { IssuedIdentity } from '../upstream/protocol.ts';
import { budgetFor, withDeviceCa } from './budget.ts';
import type { AuditInfo, IssuerCore, RequestContext } from './core.ts';
import { signDeviceCa } from './device-ca.ts';
import { checkUsable, updateGateway } from './gateways.ts';
import { type GatewayRecord, type IssuedRecord, K } from './records.ts';
import type { StoreEntry, StoreOp } from './store.ts';

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
  known?: StoreEntry<GatewayRecord>,
  /** An op remembering the response, put into the issuance batch (finish-done.ts). */
  remember?: (issued: IssuedIdentity) => StoreOp,
): Promise<IssuedIdentity> {
  const now = core.clock.now();
  const spiffeId = gatewayId(core.trustDomain, gw.name);
  const signer = core.cas.signer;
  const notBefore = now - 30_000;
  const budget = budgetFor(gw, core.offlineBudgetMs);
  const sp = await signer.issue({
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
      : await signDeviceCa(signer, { spiffeId, caSpki, notBefore, notAfter: now + budget, serverNames });
  core.cas.noteSigned(Math.max(sp.notAfter, dp?.notAfter ?? 0));
  const renewal = core.newRenewSession(gw, sp.notAfter);
  const issued = (kind: IssuedRecord['kind'], notAfter: number): IssuedRecord => ({
    spiffeId,
    gateway: gw.name,
    kind,
    notAfter,
  });
  const response: IssuedIdentity = {
    spiffeId,
    svidChain: [sp.der],
    deviceCaChain: dp === undefined ? [] : [dp.der],
    bundle: core.cas.bundleJson(),
    bundleSequence: core.cas.sequence,
    nextNonce: renewal.nonce,
    nextSessionId: renewal.id,
  };
  const ops: StoreOp[] = [
    ...extraOps,
    ...(remember === undefined ? [] : [remember(response)]),
    { type: 'put', key: K.issued(sp.serialHex), value: issued('svid', sp.notAfter) },
    ...(dp === undefined
      ? []
      : [{ type: 'put' as const, key: K.issued(dp.serialHex), value: issued('device-ca', dp.notAfter) }]),
    { type: 'put', key: K.session(renewal.id), value: renewal },
  ];
  // The record is written under the version read here (updateGateway): an operator's disable,
  // budget or registration that committed since the caller read it is kept, or refuses this.
  await updateGateway(
    core,
    gw.name,
    (current) => {
      checkUsable(core, gw.name, current);
      const base = current ?? gw;
      const record: GatewayRecord = {
        ...base,
        // What the attestation established (method, AK, EK, firmware) is this issuance's to set.
        method: gw.method,
        ...(gw.akPublic === undefined ? {} : { akPublic: gw.akPublic }),
        ...(gw.ekHash === undefined ? {} : { ekHash: gw.ekHash }),
        ...(gw.firmware === undefined ? {} : { firmware: gw.firmware }),
        maxNotAfter: Math.max(base.maxNotAfter, sp.notAfter, dp?.notAfter ?? 0),
        lastIssuedAt: now,
        deviceCas: withDeviceCa(base, dp && { serial: dp.serialHex, notAfter: dp.notAfter }, now),
      };
      return {
        record,
        ops: [
          ...ops,
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
        ],
      };
    },
    () => recheckConsumed(core, extraOps),
    known,
  );
  return response;
}

/**
 * After a conflicting issuance batch: was it one of the caller's single-use preconditions (a
 * join token another replica consumed first)? Then refuse as a replay; else the gateway record
 * moved and the issuance is retried on the fresh record.
 */
async function recheckConsumed(core: IssuerCore, extraOps: readonly StoreOp[]): Promise<void> {
  for (const op of extraOps) {
    if (op.type !== 'present' && op.type !== 'version') continue;
    const e = await core.store.getEntry(op.key);
    if (e !== undefined && (op.type === 'present' || e.version === op.version)) continue;
    throw op.key.startsWith('token/')
      ? new IssuerError('ERR_ISSUER_TOKEN_INVALID', 'join token unknown, used or expired')
      : new IssuerError('ERR_ISSUER_SESSION_UNKNOWN', 'unknown or already used session (replay)');
  }
}
