/**
 * A set of change listeners: `add` returns the unsubscribe function the source interfaces
 * hand out; a listener that throws is reported and does not stop the others.
 */
import type { Logger } from '../core/logger.ts';

export class Listeners<A extends unknown[]> {
  readonly #set = new Set<(...args: A) => void>();
  readonly #logger: Logger;
  readonly #what: string;

  constructor(what: string, logger: Logger) {
    this.#what = what;
    this.#logger = logger;
  }

  add(fn: (...args: A) => void): () => void {
    this.#set.add(fn);
    return () => {
      this.#set.delete(fn);
    };
  }

  emit(...args: A): void {
    for (const fn of [...this.#set]) {
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

  get size(): number {
    return this.#set.size;
  }
}
