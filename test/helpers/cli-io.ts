/**
 * TEST ONLY: a `CliIo` that records what a command prints, for running `main()` in-process.
 *
 * @example
 * ```ts
 * const t = captureIo({ cwd: dir });
 * assert.is(await main(['--help'], t), 0);
 * assert.match(t.stdout.join('\n'), /agent/);
 * ```
 */
import type { CliIo } from '../../runtime/cli/command.ts';

export interface CapturedIo extends CliIo {
  /** Lines printed with `out`, in order. */
  readonly stdout: string[];
  /** Lines printed with `err`, in order. */
  readonly stderr: string[];
}

export function captureIo(
  o: { cwd?: string; env?: Record<string, string>; signal?: AbortSignal | undefined } = {},
): CapturedIo {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (l) => stdout.push(l),
    err: (l) => stderr.push(l),
    env: o.env ?? {},
    cwd: o.cwd ?? process.cwd(),
    stopSignal: o.signal ?? new AbortController().signal,
  };
}
