/**
 * Checks on a gateway every handler shares (a usable name, a gateway neither disabled nor
 * revoked) and the one way its record is changed (`updateGateway`: under a version precondition).
 */
import { isEdgewardError } from '../core/error.ts';
import { IssuerError } from '../errors.ts';
import { gatewayId, isPathSegment } from '../spiffe/id.ts';
import type { IssuerCore } from './core.ts';
import { type GatewayRecord, K } from './records.ts';
import type { BatchResult, StoreEntry, StoreOp } from './store.ts';

export function checkName(name: string): void {
  if (!isPathSegment(name) || name.length > 64)
    throw new IssuerError(
      'ERR_ISSUER_BAD_REQUEST',
      `gateway name '${String(name).slice(0, 80)}' must be 1-64 of [A-Za-z0-9._-]`,
    );
}

export async function checkGatewayUsable(
  core: Pick<IssuerCore, 'store' | 'trustDomain' | 'revocations'>,
  name: string,
): Promise<GatewayRecord | undefined> {
  const gw = await core.store.get<GatewayRecord>(K.gateway(name));
  checkUsable(core, name, gw);
  return gw;
}

/** How many times a gateway update re-reads and retries after a concurrent change (then 503). */
const UPDATE_ATTEMPTS = 16;

/**
 * Read-modify-write of gateway `name`'s record that is correct with any number of replicas: the
 * record is read with its version and written back under that version (or "absent" when new),
 * in one batch with `ops(record)`'s other operations. When another writer got there first
 * (`ERR_ISSUER_STORE_CONFLICT`), `change` runs again on the fresh record, so a concurrent
 * `disable` is never undone by a rewrite of the old record: `change` sees it and refuses or
 * keeps it. `change` returns the new record and the batch's other ops (or throws to refuse).
 * `recheck` runs after a conflict, before the retry: it throws when the conflict was on one of
 * the other ops' preconditions (a join token consumed by another replica).
 */
export async function updateGateway(
  core: Pick<IssuerCore, 'store'>,
  name: string,
  change: (
    current: GatewayRecord | undefined,
  ) => Promise<{ record: GatewayRecord; ops: StoreOp[] }> | { record: GatewayRecord; ops: StoreOp[] },
  recheck: () => Promise<void> = async () => {},
  /** The record as the caller read it: the first attempt's version, not read again. */
  known?: StoreEntry<GatewayRecord>,
): Promise<GatewayRecord> {
  return (await updateGatewayWith(core, name, change, recheck, known)).record;
}

/** `updateGateway`, also answering the batch's result (the sequences it allocated). */
export async function updateGatewayWith(
  core: Pick<IssuerCore, 'store'>,
  name: string,
  change: (
    current: GatewayRecord | undefined,
  ) => Promise<{ record: GatewayRecord; ops: StoreOp[] }> | { record: GatewayRecord; ops: StoreOp[] },
  recheck: () => Promise<void> = async () => {},
  known?: StoreEntry<GatewayRecord>,
): Promise<{ record: GatewayRecord; result: BatchResult; sequences: readonly number[] }> {
  const key = K.gateway(name);
  for (let attempt = 1; ; attempt++) {
    const entry =
      attempt === 1 && known !== undefined ? known : await core.store.getEntry<GatewayRecord>(key);
    const { record, ops } = await change(entry?.value);
    try {
      const result = await core.store.batch([
        entry === undefined ? { type: 'absent', key } : { type: 'version', key, version: entry.version },
        { type: 'put', key, value: record },
        ...ops,
      ]);
      return { record, result, sequences: result.sequences };
    } catch (err) {
      if (!isEdgewardError(err) || err.code !== 'ERR_ISSUER_STORE_CONFLICT') throw err;
      await recheck();
      if (attempt >= UPDATE_ATTEMPTS)
        throw new IssuerError('ERR_ISSUER_STORE_UNAVAILABLE', `gateway ${name}: too many concurrent updates`);
    }
  }
}

/** A usable gateway record (`current` re-read by `updateGateway`): refused when disabled or revoked. */
export function checkUsable(
  core: Pick<IssuerCore, 'trustDomain' | 'revocations'>,
  name: string,
  current: GatewayRecord | undefined,
): void {
  if (current?.disabled === true)
    throw new IssuerError('ERR_ISSUER_GATEWAY_DISABLED', `gateway ${name} is disabled`);
  if (core.revocations.isRevokedId(gatewayId(core.trustDomain, name)))
    throw new IssuerError('ERR_ISSUER_REVOKED', `gateway ${name} is revoked`);
}
