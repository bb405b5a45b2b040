/**
 * Error codes of `runtime/` (config, CLI, agent, issuer, store, SVID helpers).
 * Codes are stable: they appear in logs, audit records and CBOR error bodies.
 */
import { EdgewardError } from './core/error.ts';

export type RuntimeErrorCode =
  | 'ERR_CONFIG_INVALID'
  | 'ERR_CONFIG_UNREADABLE'
  | 'ERR_CONFIG_VERSION'
  | 'ERR_CLI_USAGE';

export class RuntimeError extends EdgewardError<RuntimeErrorCode> {}

/** One problem found in a config file: `path` as `a.b[0].c`, and what is wrong. */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

/** A config file failed validation; `issues` holds every problem found, not just the first. */
export class ConfigError extends EdgewardError<
  'ERR_CONFIG_INVALID' | 'ERR_CONFIG_UNREADABLE' | 'ERR_CONFIG_VERSION'
> {
  readonly issues: readonly ConfigIssue[];
  readonly file: string | undefined;

  constructor(
    code: 'ERR_CONFIG_INVALID' | 'ERR_CONFIG_UNREADABLE' | 'ERR_CONFIG_VERSION',
    issues: readonly ConfigIssue[],
    file?: string,
    options?: { cause?: unknown },
  ) {
    const where = file === undefined ? 'config' : file;
    super(
      code,
      `${where}: ${issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`,
      options,
    );
    this.issues = issues;
    this.file = file;
  }
}
