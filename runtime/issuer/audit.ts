/**
 * The audit log: every issuance, renewal, refusal (with its reason code), revocation and
 * administrative change becomes one record in the store, written in the same atomic batch as
 * the change it describes, and one structured log line. Never key material. Keys are time,
 * a per-process counter and a random per-process id, so replicas on one store never collide.
 *
 * @example
 * ```ts
 * await store.batch([...changes, audit.op({ event: 'issue', gateway: 'gw-1', serials })]);
 * ```
 */
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { type AuditEvent, K } from './records.ts';
import type { IssuerStore, StoreOp } from './store.ts';

export class AuditLog {
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #store: IssuerStore;
  /** This process's id in audit keys (12 random bytes, base64url): replicas never collide. */
  readonly #instance: string;
  #n = 0;

  constructor(store: IssuerStore, clock: Clock, logger: Logger, random: Random) {
    this.#store = store;
    this.#clock = clock;
    this.#logger = logger;
    this.#instance = Buffer.from(random.bytes(12)).toString('base64url');
  }

  /** A store operation recording `e` (to add to the batch of the change it describes). */
  op(e: Omit<AuditEvent, 'at'>): StoreOp {
    const at = this.#clock.now();
    const event: AuditEvent = { at, ...e };
    const fields = { ...event } as Record<string, unknown>;
    if (e.event === 'refuse') this.#logger.warn(`issuer ${e.event}`, fields);
    else this.#logger.info(`issuer ${e.event}`, fields);
    this.#n = (this.#n + 1) % 100_000_000;
    return { type: 'put', key: K.audit(at, this.#n, this.#instance), value: event };
  }

  /** Record `e` on its own. */
  async write(e: Omit<AuditEvent, 'at'>): Promise<void> {
    await this.#store.batch([this.op(e)]);
  }

  /** Events in time order, optionally only those at or after `since`. */
  async list(since = 0, limit = 1000): Promise<AuditEvent[]> {
    const from = K.auditFrom(Math.max(0, since));
    const rows = await this.#store.list<AuditEvent>('audit/', {
      gt: from,
      limit,
    });
    return rows.map(([, v]) => v);
  }
}
