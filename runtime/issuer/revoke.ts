/**
 * Revocation by an operator: a gateway or device SPIFFE ID of this trust domain (a gateway is
 * also disabled) or a certificate serial. The entry is kept in the feed until everything it
 * affects has expired (`until`); the revocation record (its sequence allocated by the store in
 * that batch), the gateway record (under its version), the notification to every replica and the
 * audit event are one batch; the in-memory indexes learn of it only once that committed.
 */
import { IssuerError } from '../errors.ts';
import { parseSpiffeId } from '../spiffe/id.ts';
import { MAX_OFFLINE_BUDGET_MS } from './budget.ts';
import type { IssuerCore } from './core.ts';
import { updateGatewayWith } from './gateways.ts';
import { type GatewayRecord, type IssuedRecord, K } from './records.ts';
import type { StoreOp } from './store.ts';

export async function revoke(
  core: IssuerCore,
  kind: 'spiffe-id' | 'serial',
  value: string,
  by?: string,
): Promise<{ sequence: number; until: number }> {
  const now = core.clock.now();
  let disable = false;
  let until: number;
  let gateway: string | undefined;
  if (kind === 'serial') {
    if (!/^[0-9a-f]{1,40}$/.test(value) || (value.length > 1 && value.startsWith('0')))
      throw new IssuerError('ERR_ISSUER_BAD_REQUEST', 'serial must be lowercase hex without leading zeros');
    const issued = await core.store.get<IssuedRecord>(K.issued(value));
    // A serial we neither signed nor were told of is a device's: bounded by the longest budget.
    until = issued?.notAfter ?? now + MAX_OFFLINE_BUDGET_MS;
    gateway = issued?.gateway;
  } else {
    const id = parseSpiffeId(value);
    const [g0, name, d0, device] = id.segments;
    if (id.trustDomain !== core.trustDomain || g0 !== 'gateway' || name === undefined)
      throw new IssuerError(
        'ERR_ISSUER_BAD_REQUEST',
        `${value} is not a gateway or device ID of ${core.trustDomain}`,
      );
    if (id.segments.length !== 2 && !(id.segments.length === 4 && d0 === 'device' && device !== undefined))
      throw new IssuerError('ERR_ISSUER_BAD_REQUEST', `${value} is not a gateway or device ID`);
    gateway = name;
    const gw = await core.store.get<GatewayRecord>(K.gateway(name));
    // Device SVIDs never outlive the gateway's delegated CA: its latest NotAfter bounds both.
    until = gw?.maxNotAfter ?? 0;
    if (until <= now) until = now + MAX_OFFLINE_BUDGET_MS;
    disable = id.segments.length === 2 && gw !== undefined;
  }
  const ops: StoreOp[] = [
    ...core.revocations.ops(kind, value, until),
    core.audit.op({
      event: 'revoke',
      ...(gateway === undefined ? {} : { gateway }),
      detail: `${kind}:${value}`,
      ...(by === undefined ? {} : { by }),
    }),
  ];
  let allocated: readonly number[];
  if (disable && gateway !== undefined) {
    // The gateway is disabled under its record's version (a concurrent issuance cannot undo it).
    const r = await updateGatewayWith(core, gateway, (current) => ({
      record: { ...(current as GatewayRecord), disabled: true },
      ops,
    }));
    allocated = r.sequences;
  } else allocated = (await core.store.batch(ops)).sequences;
  const sequence = core.revocations.sequenceOf(allocated);
  // This replica's index learns of it now; the others from the notification (or their poll).
  await core.revocations.refresh();
  return { sequence, until };
}
