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
  /** Resolves with the first stdout line (printed so far or next) matching `re`; rejects after `ms`. */
  outLine(re: RegExp, ms?: number): Promise<string>;
}

export function captureIo(
  o: { cwd?: string; env?: Record<string, string>; signal?: AbortSignal | undefined } = {},
): CapturedIo {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  return {
    stdout,
    stderr,
    outLine: (re, ms = 10_000) => {
      const seen = stdout.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const w = {
          re,
          resolve: (l: string) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(
            new Error(`no output line matching ${re} within ${ms} ms: ${[...stdout, ...stderr].join(' | ')}`),
          );
        }, ms);
        waiters.push(w);
      });
    },
    out: (l) => {
      stdout.push(l);
      for (const w of waiters.filter((x) => x.re.test(l))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    },
    err: (l) => stderr.push(l),
    env: o.env ?? {},
    cwd: o.cwd ?? process.cwd(),
    stopSignal: o.signal ?? new AbortController().signal,
  };
}
