/**
 * The log of device certificates a gateway issued under its delegated CA while the issuer was
 * out of reach (`POST /v1/devices/issued`, mTLS with the gateway SVID). Every entry must name a
 * device under the caller's own `<gateway ID>/device/` path, with a well-formed serial and
 * validity; a request with one bad entry is refused whole (`ERR_ISSUER_DEVICE_SCOPE` or
 * `ERR_ISSUER_BAD_REQUEST`), at most `MAX_DEVICES_ISSUED` entries. Each new entry becomes an
 * issued record (so `revoke --serial` knows how long to keep it, and pruning drops it when it
 * expires) and one audit event, all in one batch; an entry already recorded for the same
 * device (an upload retried after a lost answer) is accepted again without a second event.
 *
 * @example
 * ```ts
 * await issuer.devicesIssued({ entries: [{ spiffeId, serial, notBefore, notAfter, issuedAt }] }, ctx);
 * ```
 */
import { IssuerError } from '../errors.ts';
import { deviceIdOf, gatewayId } from '../spiffe/id.ts';
import {
  type DeviceIssuedEntry,
  type DevicesIssuedResponse,
  MAX_DEVICES_ISSUED,
} from '../upstream/protocol.ts';
import type { AuditInfo, IssuerCore, RequestContext } from './core.ts';
import { authenticatePeer } from './peer.ts';
import { type IssuedRecord, K } from './records.ts';
import type { StoreOp } from './store.ts';

const bad = (why: string): IssuerError => new IssuerError('ERR_ISSUER_BAD_REQUEST', `devices issued: ${why}`);

function entries(body: unknown): DeviceIssuedEntry[] {
  const list = (body as { entries?: unknown } | null)?.entries;
  if (body === null || typeof body !== 'object' || !Array.isArray(list))
    throw bad('body must be { entries: [...] }');
  if (list.length > MAX_DEVICES_ISSUED)
    throw new IssuerError(
      'ERR_ISSUER_BODY_TOO_LARGE',
      `devices issued: at most ${MAX_DEVICES_ISSUED} entries per request`,
    );
  return list.map((e: unknown, i) => {
    const o = e as Record<string, unknown> | null;
    if (o === null || typeof o !== 'object' || Array.isArray(o) || e instanceof Uint8Array)
      throw bad(`entries[${i}] must be a map`);
    const { spiffeId, serial, notBefore, notAfter, issuedAt } = o;
    if (typeof spiffeId !== 'string' || spiffeId.length === 0 || spiffeId.length > 2048)
      throw bad(`entries[${i}].spiffeId must be a string of 1..2048`);
    if (
      typeof serial !== 'string' ||
      !/^[0-9a-f]{1,40}$/.test(serial) ||
      (serial.length > 1 && serial.startsWith('0'))
    )
      throw bad(`entries[${i}].serial must be lowercase hex without leading zeros`);
    const times = [notBefore, notAfter, issuedAt];
    if (
      !times.every((t) => Number.isSafeInteger(t) && (t as number) >= 0) ||
      (notBefore as number) >= (notAfter as number)
    )
      throw bad(`entries[${i}]: notBefore < notAfter and issuedAt must be epoch milliseconds`);
    return {
      spiffeId,
      serial,
      notBefore: notBefore as number,
      notAfter: notAfter as number,
      issuedAt: issuedAt as number,
    };
  });
}

export async function devicesIssued(
  core: IssuerCore,
  body: unknown,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<DevicesIssuedResponse> {
  const gw = await authenticatePeer(core, ctx, info);
  const list = entries(body);
  const gwId = gatewayId(core.trustDomain, gw.name);
  const ops: StoreOp[] = [];
  const seen = new Set<string>();
  for (const [i, e] of list.entries()) {
    // ARCHITECTURE.md §2 path scoping: exactly `<gateway ID>/device/<one segment>`.
    if (deviceIdOf(e.spiffeId, gwId) === undefined)
      throw new IssuerError(
        'ERR_ISSUER_DEVICE_SCOPE',
        `entries[${i}]: ${e.spiffeId.slice(0, 200)} is not a device of ${gwId}`,
      );
    const known = await core.store.get<IssuedRecord>(K.issued(e.serial));
    if (known !== undefined && !(known.kind === 'device' && known.spiffeId === e.spiffeId))
      throw new IssuerError(
        'ERR_ISSUER_DEVICE_SCOPE',
        `entries[${i}]: serial ${e.serial} belongs to another certificate`,
      );
    if (known !== undefined || seen.has(e.serial)) continue;
    seen.add(e.serial);
    const record: IssuedRecord = {
      spiffeId: e.spiffeId,
      gateway: gw.name,
      kind: 'device',
      notAfter: e.notAfter,
    };
    if (e.notAfter > core.clock.now()) ops.push({ type: 'put', key: K.issued(e.serial), value: record });
    ops.push(
      core.audit.op({
        event: 'device',
        method: gw.method,
        gateway: gw.name,
        spiffeId: e.spiffeId,
        serials: [e.serial],
        address: ctx.address,
        detail: `issued offline at ${new Date(e.issuedAt).toISOString()}, valid ${new Date(e.notBefore).toISOString()} to ${new Date(e.notAfter).toISOString()}`,
      }),
    );
  }
  await core.store.batch(ops);
  return { accepted: list.length };
}
