/**
 * One teardown list for a component built step by step: each step registers how to undo itself
 * as soon as it exists, and `run()` undoes them in reverse order, once (later calls return the
 * same promise). Used both when start fails half-way and by `close()`, so the two cannot drift.
 *
 * @example
 * ```ts
 * const teardown = new Teardown(logger);
 * const db = await open(); teardown.add('db', () => db.close());
 * const server = await listen(); teardown.add('server', () => server.close());
 * await teardown.run(); // server, then db
 * ```
 */
import type { Logger } from '../../runtime/core/logger.ts';

export class Teardown {
  readonly #steps: { readonly name: string; readonly run: () => void | Promise<void> }[] = [];
  readonly #logger: Logger;
  #ran: Promise<void> | undefined;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  get ran(): boolean {
    return this.#ran !== undefined;
  }

  add(name: string, run: () => void | Promise<void>): void {
    if (this.#ran !== undefined) throw new TypeError(`teardown already ran: cannot add ${name}`);
    this.#steps.push({ name, run });
  }

  /** Runs every step, last added first; a failing step is logged and the others still run. */
  run(): Promise<void> {
    this.#ran ??= (async () => {
      for (const step of this.#steps.toReversed()) {
        try {
          await step.run();
        } catch (err) {
          this.#logger.error('teardown step failed', { step: step.name, reason: (err as Error).message });
        }
      }
    })();
    return this.#ran;
  }
}
