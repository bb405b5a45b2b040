/**
 * The base of every typed error in edgeward.
 *
 * Each top-level folder keeps one `errors.ts` with a closed union of stable codes
 * (`ERR_<AREA>_<WHAT>`) and subclasses that carry structured fields. Callers switch on
 * `err.code`; tests assert on it. Programmer misuse throws `TypeError` instead.
 *
 * @example
 * ```ts
 * class StoreError extends EdgewardError<'ERR_STORE_CORRUPT'> {}
 * throw new StoreError('ERR_STORE_CORRUPT', 'value failed authentication', { cause });
 * ```
 */
export class EdgewardError<C extends string = string> extends Error {
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** True when `err` is an EdgewardError (optionally with the given code). */
export function isEdgewardError(err: unknown, code?: string): err is EdgewardError {
  return err instanceof EdgewardError && (code === undefined || err.code === code);
}
