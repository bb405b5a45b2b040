/**
 * Every refusal of the broker, in one place: logged at warn with its typed code (never only a
 * message text) and counted by code, so tests, `/metrics` and an operator see the same thing.
 *
 * @example
 * ```ts
 * const refusals = new Refusals(logger);
 * done(refusals.refuse('PUBLISH', 'ERR_MQTT_PUBLISH_DENIED', `not granted: ${topic}`, { topic }));
 * refusals.counts(); // { ERR_MQTT_PUBLISH_DENIED: 1 }
 * ```
 */
import type { LogFields, Logger } from '../../runtime/core/logger.ts';
import { TransportError, type TransportErrorCode } from '../errors.ts';

export class Refusals {
  readonly #logger: Logger;
  readonly #counts = new Map<TransportErrorCode, number>();
  /** Errors `refuse` made (and counted), which aedes may report again as a client error. */
  readonly #made = new WeakSet<Error>();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** Logs `<what> refused` with `code`, counts it, and returns the typed error. */
  refuse(what: string, code: TransportErrorCode, reason: string, fields: LogFields = {}): TransportError {
    this.#counts.set(code, (this.#counts.get(code) ?? 0) + 1);
    this.#logger.warn(`${what} refused`, { code, reason, ...fields });
    const err = new TransportError(code, reason);
    this.#made.add(err);
    return err;
  }

  /** Counts a refusal already logged elsewhere (e.g. a parser error aedes reports). */
  count(err: TransportError): void {
    if (this.#made.has(err)) return;
    this.#made.add(err);
    this.#counts.set(err.code, (this.#counts.get(err.code) ?? 0) + 1);
  }

  /** Refusals since start, by code. */
  counts(): Readonly<Partial<Record<TransportErrorCode, number>>> {
    return Object.fromEntries(this.#counts);
  }
}
