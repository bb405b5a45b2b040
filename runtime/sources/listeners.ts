/**
 * A set of change listeners: `add` returns the unsubscribe function the source interfaces
 * hand out. With a logger (the agent's live sources), a listener that throws is reported and
 * does not stop the others; without one (the static sources tests use), its error propagates
 * to whoever caused the change.
 */
import type { Logger } from '../core/logger.ts';
import type { Unsubscribe } from './types.ts';

export class Listeners<A extends unknown[]> {
  readonly #set = new Set<(...args: A) => void>();
  readonly #logger: Logger | undefined;
  readonly #what: string;

  constructor(what: string, logger?: Logger) {
    this.#what = what;
    this.#logger = logger;
  }

  add(fn: (...args: A) => void): Unsubscribe {
    this.#set.add(fn);
    return () => {
      this.#set.delete(fn);
    };
  }

  emit(...args: A): void {
    for (const fn of [...this.#set]) {
      if (this.#logger === undefined) {
        fn(...args);
        continue;
      }
      try {
        fn(...args);
      } catch (err) {
        this.#logger.error('change listener failed', {
          event: 'listener.error',
          what: this.#what,
          err: String(err),
        });
      }
    }
  }

  clear(): void {
    this.#set.clear();
  }
}
