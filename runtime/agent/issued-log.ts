/**
 * The log of device certificates the gateway issued, for the issuer's audit (`POST
 * /v1/devices/issued`, TEAM protocol). Each issuance is written as `issued/<issuedAt>/<serial>` in
 * the same store batch as its `device/<id>` record (`issuedLogOp`), so a re-issued device or a
 * pruned record never loses an entry. After the revocation feed (feed.ts), `upload` sends the
 * pending entries oldest first in batches of at most `MAX_DEVICES_ISSUED` (500) over mTLS and
 * deletes each batch once the issuer accepted it: what was not accepted is sent again after a
 * failure or a restart (resumable), and nothing is sent twice once accepted.
 *
 * @example
 * ```ts
 * await store.batch([{ type: 'put', name: deviceName(id), value: rec }, issuedLogOp(rec)]);
 * const sent = await log.upload(failover, { clientSvid: live.svid });
 * ```
 */
import type { X509Svid } from '../sources/types.ts';
import type { DeviceRecord } from '../store/records.ts';
import type { SealedStore, StoreOp } from '../store/sealed-store.ts';
import type { Failover } from '../upstream/failover.ts';
import {
  type DeviceIssuedEntry,
  type DevicesIssuedRequest,
  type DevicesIssuedResponse,
  MAX_DEVICES_ISSUED,
  PATHS,
} from '../upstream/protocol.ts';
import type { EventLog } from './events.ts';

export const ISSUED_PREFIX = 'issued/';

/** The log entry of one device issuance; its name sorts by issuance time. */
export function issuedLogOp(rec: DeviceRecord): StoreOp {
  const value: DeviceIssuedEntry = {
    spiffeId: rec.spiffeId,
    serial: rec.serial,
    // The device signer signs with NotBefore = issuedAt, which X.509 keeps to the second.
    notBefore: Math.floor(rec.issuedAt / 1000) * 1000,
    notAfter: rec.notAfter,
    issuedAt: rec.issuedAt,
  };
  const name = `${ISSUED_PREFIX}${String(rec.issuedAt).padStart(16, '0')}/${rec.serial}`;
  return { type: 'put', name, value };
}

export class IssuedLog {
  readonly #store: SealedStore;
  readonly #event: EventLog;
  readonly #batchSize: number;

  constructor(store: SealedStore, event: EventLog, batchSize = MAX_DEVICES_ISSUED) {
    if (!(batchSize >= 1 && batchSize <= MAX_DEVICES_ISSUED))
      throw new TypeError(`batch size must be 1..${MAX_DEVICES_ISSUED}`);
    this.#store = store;
    this.#event = event;
    this.#batchSize = batchSize;
  }

  /** Entries not yet accepted by the issuer. */
  async pending(): Promise<number> {
    let n = 0;
    for await (const _ of this.#store.entries(ISSUED_PREFIX)) n++;
    return n;
  }

  /**
   * Send every pending entry; resolves with how many were accepted. Throws on the first failure.
   * Entries under another gateway ID (issued before this gateway was re-provisioned under a new
   * name) are dropped with a warning: the issuer admits only the caller's own `/device/` path, and
   * one such entry would otherwise hold back the whole log for ever.
   */
  async upload(failover: Failover, auth: { clientSvid: X509Svid }): Promise<number> {
    const scope = `${auth.clientSvid.spiffeId}/device/`;
    let total = 0;
    for (;;) {
      const batch: [string, DeviceIssuedEntry][] = [];
      const foreign: [string, DeviceIssuedEntry][] = [];
      for await (const e of this.#store.entries<DeviceIssuedEntry>(ISSUED_PREFIX)) {
        (e[1].spiffeId.startsWith(scope) ? batch : foreign).push(e);
        if (batch.length === this.#batchSize) break;
      }
      if (foreign.length > 0) {
        await this.#store.batch(foreign.map(([name]) => ({ type: 'del', name })));
        this.#event('warn', 'issuance log entries of another gateway ID dropped', 'devices.foreign', {
          entries: foreign.length,
          spiffeIds: [...new Set(foreign.map(([, v]) => v.spiffeId))].slice(0, 10),
        });
      }
      if (batch.length === 0) break;
      const body: DevicesIssuedRequest = { entries: batch.map(([, v]) => v) };
      const res = await failover.run((ep) => ep.post<DevicesIssuedResponse>(PATHS.devicesIssued, body, auth));
      await this.#store.batch(batch.map(([name]) => ({ type: 'del', name })));
      total += batch.length;
      this.#event('info', 'device issuances uploaded to the issuer audit', 'devices.uploaded', {
        entries: batch.length,
        accepted: typeof res?.accepted === 'number' ? res.accepted : undefined,
      });
      if (batch.length < this.#batchSize) break;
    }
    return total;
  }
}
