/**
 * Assertion helpers shared by every suite. uvu's `assert.throws` is synchronous only, so
 * rejections of promises go through `rejects`, which asserts on the typed error code.
 */
import * as assert from 'uvu/assert';

/** Awaits `fn()` and asserts it rejects with an error whose `code` is `code`. Returns the error. */
export async function rejects<E = Error & { code: string }>(
  fn: () => Promise<unknown> | unknown,
  code: string,
): Promise<E> {
  try {
    await fn();
  } catch (err) {
    const got = (err as { code?: unknown }).code;
    assert.is(got, code, `expected code ${code}, got ${String(got)}: ${(err as Error).message}`);
    return err as E;
  }
  assert.unreachable(`expected a rejection with code ${code}`);
  throw new Error('unreachable');
}
