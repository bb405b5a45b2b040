/**
 * The shape every `edgeward` subcommand has, and the one flag parser they share.
 * Usage errors are one clear line on stderr and exit code 2.
 */
import { parseArgs } from 'node:util';
import { RuntimeError } from '../errors.ts';

/** What a subcommand may touch: built by the composition root (`main.ts`) only. */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  /** Resolves when the user asks the process to stop (SIGINT/SIGTERM). */
  readonly stopSignal: AbortSignal;
}

export interface Command {
  readonly name: string;
  /** One line for `edgeward --help`. */
  readonly summary: string;
  /** The full text of `edgeward <name> --help`. */
  readonly help: string;
  /** Runs the command; resolves to the process exit code. */
  run(argv: readonly string[], io: CliIo): Promise<number>;
}

export type FlagSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

/** A usage mistake: printed as one line, exit code 2. */
export class UsageError extends RuntimeError {
  constructor(message: string) {
    super('ERR_CLI_USAGE', message);
  }
}

/**
 * Parse `argv` strictly: unknown flags, missing values and stray positionals are UsageErrors.
 * `--help` is always accepted and reported as `help: true`.
 */
export function parseFlags<S extends FlagSpec>(
  argv: readonly string[],
  spec: S,
  opts: { positionals?: number; command: string } = { command: '' },
): {
  values: {
    [K in keyof S]?: S[K]['type'] extends 'boolean'
      ? boolean
      : S[K]['multiple'] extends true
        ? string[]
        : string;
  };
  positionals: string[];
  help: boolean;
} {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options: { ...spec, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: (opts.positionals ?? 0) > 0,
    });
    const bag = values as Record<string, unknown>;
    const help = bag.help === true;
    if (!help && positionals.length > (opts.positionals ?? 0)) {
      throw new UsageError(`${opts.command}: unexpected argument '${positionals[opts.positionals ?? 0]}'`);
    }
    delete bag.help;
    return { values: values as never, positionals, help };
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const msg = (err as Error).message.split('\n')[0] ?? 'bad arguments';
    throw new UsageError(`${opts.command}: ${msg.replace(/\. To specify a positional.*$/, '')}`);
  }
}

/** Throws a UsageError naming the flag when a required value is missing. */
export function required<T>(value: T | undefined, flag: string, command: string): T {
  if (value === undefined || value === '')
    throw new UsageError(`${command}: missing required option --${flag}`);
  return value;
}
