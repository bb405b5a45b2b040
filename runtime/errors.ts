/**
 * Error codes of `runtime/` (config, CLI, agent, issuer, store, SVID helpers).
 * Codes are stable: they appear in logs, audit records and CBOR error bodies.
 */
import { EdgewardError } from './core/error.ts';

export type RuntimeErrorCode =
  | 'ERR_CONFIG_INVALID'
  | 'ERR_CONFIG_UNREADABLE'
  | 'ERR_CONFIG_VERSION'
  | 'ERR_CLI_USAGE'
  | AgentErrorCode;

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

/** Codes of the gateway agent: `runtime/agent/`, `runtime/store/`, `runtime/upstream/` client, `runtime/admin/`. */
export type AgentErrorCode =
  /** The sealed store has a newer schema than this build knows, or a migration failed. */
  | 'ERR_STORE_SCHEMA'
  /** The store's data key could not be unsealed (other TPM, PCR policy no longer met, key file lost). */
  | 'ERR_STORE_KEY'
  /** A key file that is not mode 0600, or does not hold a 32-byte key. */
  | 'ERR_STORE_KEY_FILE'
  /** A stored value failed authentication (tampered or corrupt); it is dropped, never served. */
  | 'ERR_STORE_CORRUPT'
  | 'ERR_STORE_CLOSED'
  /** The wall clock is behind the persisted time floor: no signing until it is sane. */
  | 'ERR_CLOCK_UNTRUSTED'
  /** The issuer answered something that is not a valid identity for our keys, or not CBOR. */
  | 'ERR_UPSTREAM_PROTOCOL'
  /** Network, TLS or timeout failure talking to an upstream endpoint. */
  | 'ERR_UPSTREAM_UNREACHABLE'
  /** 5xx from the issuer. */
  | 'ERR_UPSTREAM_UNAVAILABLE'
  /** 429 from the issuer (with `retryAfterMs`). */
  | 'ERR_UPSTREAM_RATE_LIMITED'
  /** 401/403: refused for cause (revoked, PCR drift, unknown gateway). Reported, never retried blindly. */
  | 'ERR_UPSTREAM_REFUSED'
  /** 400/404/409/413/415: the issuer rejected the request itself. */
  | 'ERR_UPSTREAM_REJECTED'
  /** The circuit breaker is open: no call is made until it half-opens. */
  | 'ERR_UPSTREAM_BREAKER_OPEN'
  | 'ERR_AGENT_CLOSED'
  /** A device CSR that does not parse, whose signature fails, or whose key is weak. */
  | 'ERR_DEVICE_CSR_INVALID'
  /** A device id that is not one SPIFFE path segment. */
  | 'ERR_DEVICE_ID_INVALID'
  /** The admin socket: not found or not answering. */
  | 'ERR_ADMIN_UNREACHABLE'
  /** The admin socket answered with an error, or was sent a bad request. */
  | 'ERR_ADMIN_REQUEST';

/** A typed failure of the agent; `fields` carries structured context (endpoint, status, key name). */
export class AgentError extends EdgewardError<AgentErrorCode> {
  readonly fields: Readonly<Record<string, unknown>>;

  constructor(
    code: AgentErrorCode,
    message: string,
    fields: Readonly<Record<string, unknown>> = {},
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.fields = fields;
  }
}
