/**
 * Error codes of `runtime/` (config, CLI, agent, issuer, store, SVID helpers).
 * Codes are stable: they appear in logs, audit records and CBOR error bodies.
 */
import { EdgewardError } from './core/error.ts';

export type RuntimeErrorCode =
  /** A config file failed validation; every issue is listed with its path and line. */
  | 'ERR_CONFIG_INVALID'
  /** A config file could not be read. */
  | 'ERR_CONFIG_UNREADABLE'
  /** A config file's `version` is missing, malformed or newer than this build. */
  | 'ERR_CONFIG_VERSION'
  /** A command-line mistake: one line on stderr, exit code 2. */
  | 'ERR_CLI_USAGE'
  | AgentErrorCode
  | SpiffeErrorCode
  | SvidErrorCode
  | IssuerErrorCode
  | FirmwareErrorCode
  | WorkloadErrorCode;

/** Codes of `runtime/spiffe/` (SPIFFE IDs, X.509-SVID verification) and the identity sources. */
export type SpiffeErrorCode =
  /** A string that is not a valid SPIFFE ID or trust domain. */
  | 'ERR_SPIFFE_ID_INVALID'
  /** A certificate that breaks an X.509-SVID rule (SAN count, cA, key usage, EKU, ...). */
  | 'ERR_SVID_INVALID'
  /** A certificate of the chain is not valid at the time of the check. */
  | 'ERR_SVID_EXPIRED'
  /** The chain does not lead to a root of the bundle (or to this gateway's delegated CA). */
  | 'ERR_SVID_UNTRUSTED'
  /** A leaf signed by a delegated CA whose SPIFFE ID is not under `<CA id>/device/` or `<CA id>/workload/`. */
  | 'ERR_SVID_PATH_SCOPE'
  /** The SPIFFE ID or a certificate serial of the chain is revoked. */
  | 'ERR_SVID_REVOKED'
  /** No valid SVID (or bundle) is available from a source right now. */
  | 'ERR_SVID_UNAVAILABLE'
  /** No bundle is known for the trust domain asked for. */
  | 'ERR_BUNDLE_UNAVAILABLE'
  /** A JWT-SVID that fails validation: malformed, header or claims against the rules, unknown `kid`, bad signature, expired, another audience. */
  | 'ERR_JWT_SVID_INVALID';

export class RuntimeError extends EdgewardError<RuntimeErrorCode> {}

/** One problem found in a config file: `path` as `a.b[0].c`, and what is wrong. */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

/** A config file failed validation; `issues` holds every problem found, not just the first. */
export class ConfigError extends EdgewardError<
  /** A config file failed validation; every issue is listed with its path and line. */
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

/** An identity check failed; `spiffeId` names the identity when it was known. */
export class SpiffeError extends EdgewardError<SpiffeErrorCode> {
  readonly spiffeId: string | undefined;

  constructor(code: SpiffeErrorCode, message: string, options?: { cause?: unknown; spiffeId?: string }) {
    super(code, message, options);
    this.spiffeId = options?.spiffeId;
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
  /** The store was used after it was closed. */
  | 'ERR_STORE_CLOSED'
  /** The wall clock is behind the persisted time floor: no signing until it is sane. */
  | 'ERR_CLOCK_UNTRUSTED'
  /** The issuer answered something that is not a valid identity for our keys, or not CBOR. */
  | 'ERR_UPSTREAM_PROTOCOL'
  /** The stored delegated CA key is TPM-resident but this agent (or tool) has no TPM to use it with. */
  | 'ERR_CA_KEY_UNAVAILABLE'
  /** Network, TLS or timeout failure talking to an upstream endpoint. */
  | 'ERR_UPSTREAM_UNREACHABLE'
  /** 5xx from the issuer. */
  | 'ERR_UPSTREAM_UNAVAILABLE'
  /** 429 from the issuer (with `retryAfterMs`). */
  | 'ERR_UPSTREAM_RATE_LIMITED'
  /**
   * 401/403: refused for cause (`fields.remoteCode` is the issuer's code). Revoked, disabled or
   * unknown gateway: the agent stops until an operator acts; any other refusal: the next way
   * (renew, recover, attest) at once, then retried with backoff.
   */
  | 'ERR_UPSTREAM_REFUSED'
  /** 400/404/409/413/415: the issuer rejected the request itself. */
  | 'ERR_UPSTREAM_REJECTED'
  /** The circuit breaker is open: no call is made until it half-opens. */
  | 'ERR_UPSTREAM_BREAKER_OPEN'
  /** The agent was used after it was stopped. */
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

/** Codes of `runtime/svid/`: DER, PKCS#10 CSRs, the SVID signer, SPIFFE bundle JSON. */
export type SvidErrorCode =
  /** Bytes that are not valid DER: truncated, indefinite or non-minimal lengths, wrong tags. */
  | 'ERR_DER_MALFORMED'
  /** A CSR that does not parse as PKCS#10, or uses an unsupported signature algorithm. */
  | 'ERR_CSR_MALFORMED'
  /** A CSR whose self-signature does not verify with its own key. */
  | 'ERR_CSR_SIGNATURE'
  /** A CSR key that is not EC P-256/P-384 or RSA of at least 2048 bits. */
  | 'ERR_CSR_WEAK_KEY'
  /**
   * A CSR whose EC key carries explicit curve parameters (specifiedCurve) instead of a named curve
   * OID: RFC 5480 §2.1.1 allows namedCurve only.
   */
  | 'ERR_CSR_EXPLICIT_CURVE'
  /** A SPIFFE ID the signer refuses: not `spiffe://<td>/<path>`, or outside the signer's scope. */
  | 'ERR_SVID_ID_INVALID'
  /** A signing CA that cannot sign this profile (not a CA, unsupported key, expired). */
  | 'ERR_SVID_SIGNER'
  /** SPIFFE bundle JSON that is not a valid bundle. */
  | 'ERR_BUNDLE_MALFORMED'
  /** A JWT-SVID signing key that is not EC P-256 (ES256), or gave no ECDSA signature. */
  | 'ERR_JWT_KEY_INVALID';

/** Codes of `runtime/issuer/`: every refusal the issuer answers with and records in its audit log. */
export type IssuerErrorCode =
  /** Malformed CBOR, a body of the wrong shape, a bad query. (400) */
  | 'ERR_ISSUER_BAD_REQUEST'
  /** A gateway asked for a broker host name outside the issuer's server-name policy. */
  | 'ERR_ISSUER_SERVER_NAME'
  /** A body over the limit. (413) */
  | 'ERR_ISSUER_BODY_TOO_LARGE'
  /** A content type other than `application/cbor`. (415) */
  | 'ERR_ISSUER_CONTENT_TYPE'
  /** No such route on the issuer (404). */
  | 'ERR_ISSUER_NOT_FOUND'
  /** An attestation method this issuer is not configured for. (403) */
  | 'ERR_ISSUER_METHOD_DISABLED'
  /** A session id that is unknown or already used: a replayed finish. (409) */
  | 'ERR_ISSUER_SESSION_UNKNOWN'
  /** An attestation or renewal session whose time ran out (409). */
  | 'ERR_ISSUER_SESSION_EXPIRED'
  /** A join token that is unknown, used or expired. (401) */
  | 'ERR_ISSUER_TOKEN_INVALID'
  /** No registration maps this EK, token or factory certificate to a gateway name. (403) */
  | 'ERR_ISSUER_NOT_REGISTERED'
  /** The gateway was disabled by an operator (403). */
  | 'ERR_ISSUER_GATEWAY_DISABLED'
  /** An EK or factory certificate chain that does not verify against the configured roots. (401) */
  | 'ERR_ISSUER_CHAIN_INVALID'
  /** An x509pop or delegated-CA (recovery) proof-of-possession signature that does not verify. (401) */
  | 'ERR_ISSUER_POP_INVALID'
  /** A TPM activated credential that does not match. (401) */
  | 'ERR_ISSUER_CREDENTIAL'
  /** A quote that fails: signature, nonce/key binding, PCR digest, bank, AK. (401) */
  | 'ERR_ISSUER_QUOTE_INVALID'
  /** PCR values that match no known firmware's reference values. (403) */
  | 'ERR_ISSUER_PCR_MISMATCH'
  /** Renewal without a valid, unrevoked gateway SVID as TLS client certificate. (401) */
  | 'ERR_ISSUER_CLIENT_CERT'
  /** The gateway's SPIFFE ID or certificate is revoked (403). */
  | 'ERR_ISSUER_REVOKED'
  /** Too many requests from this address or for this gateway. (429) */
  | 'ERR_ISSUER_RATE_LIMITED'
  /** A request's headers and body did not arrive within `listen.requestTimeout` of the handshake or of the last answer: 408 when a body was under way, then the connection is closed. */
  | 'ERR_ISSUER_REQUEST_TIMEOUT'
  /** A firmware manifest that is malformed, unsigned or signed by an unknown key. (400/403) */
  | 'ERR_ISSUER_MANIFEST_INVALID'
  /** A firmware version to stage that no published manifest describes. (404) */
  | 'ERR_ISSUER_FIRMWARE_UNKNOWN'
  /** Commit or retract of a staged firmware with no staging or a wrong ticket. (401) */
  | 'ERR_ISSUER_FIRMWARE_TICKET'
  /** Commit of a staged firmware the gateway has not attested with yet. (409) */
  | 'ERR_ISSUER_FIRMWARE_UNPROVEN'
  /**
   * The CA certificate or key cannot be used (at start), or this replica does not hold the active
   * CA's key (a rotation it was not given the next key for), or the store's CA state (`meta/bundle`)
   * is malformed: not ready, another replica signs. (503)
   */
  | 'ERR_ISSUER_CA_INVALID'
  /** Recovery with a delegated CA that is expired or not yet valid: the gateway must attest again. (401) */
  | 'ERR_ISSUER_CA_EXPIRED'
  /** Recovery with a CA this issuer did not record as a delegated CA of that gateway. (401) */
  | 'ERR_ISSUER_CA_UNKNOWN'
  /** `ca rotate` refused: live replicas (named) do not hold the next CA's key. File keys: configure `ca.next` there and restart them, or stop them, first. A key in a shared PKCS#11 token (the message names its URI): they look it up there themselves at their next CA poll, so make that token reachable through their `ca.pkcs11`, or stop them; no `ca.next`, no restart. (409) */
  | 'ERR_ISSUER_CA_KEY_MISSING'
  /** A device issuance log entry outside the calling gateway's `/device/` path, or a serial of another certificate. (403) */
  | 'ERR_ISSUER_DEVICE_SCOPE'
  /** A JWT-SVID asked for a SPIFFE ID that is not `<the calling gateway>/workload/<name>`. (403) */
  | 'ERR_ISSUER_JWT_SCOPE'
  /** No JWT-SVID signing key: none configured (`jwtSvid.key`), the active one not held by this replica, or no next key to rotate to; or the store's JWT key state (`meta/jwt-keys`) is malformed. (503) */
  | 'ERR_ISSUER_JWT_KEY'
  /** A private key file readable by others than its owner (must be 0600). */
  | 'ERR_ISSUER_KEY_PERMISSIONS'
  /** The PKCS#11 module (`ca.pkcs11.module`) or the optional `pkcs11js` binding cannot be loaded or initialised. */
  | 'ERR_ISSUER_PKCS11_MODULE'
  /** No token or no (or more than one) EC P-256 key matches the PKCS#11 URI; or, generating, a key of that label is already there. */
  | 'ERR_ISSUER_PKCS11_OBJECT'
  /** The token refused the PIN of `ca.pkcs11.pinFile` (wrong, locked, expired), or the PIN file is unreadable or empty. */
  | 'ERR_ISSUER_PKCS11_PIN'
  /** The token failed or went away while the issuer runs: the signature was not made, nothing was stored; /readyz is 503 until it is back. */
  | 'ERR_ISSUER_PKCS11_TOKEN'
  /** A `pkcs11:` key URI that is not RFC 7512, or carries what the issuer does not take (a PIN, a module path, unknown attributes). */
  | 'ERR_ISSUER_PKCS11_URI'
  /** The issuer is shutting down (503). */
  | 'ERR_ISSUER_CLOSED'
  /** A store batch whose precondition (key absent, present, at version N) did not hold; nothing was written. */
  | 'ERR_ISSUER_STORE_CONFLICT'
  /** The issuer's database cannot be reached (at start: exit; while running: 503, the agent tries another replica). */
  | 'ERR_ISSUER_STORE_UNAVAILABLE'
  /** The database refused the issuer's credentials (wrong password, no passwordFile, no pg_hba.conf entry), or its TLS certificate does not verify. */
  | 'ERR_ISSUER_STORE_AUTH'
  /** A `store.postgres.url` that is not a usable PostgreSQL URL (or carries a password). */
  | 'ERR_ISSUER_STORE_URL'
  /** The store's schema is newer than this edgeward: run the newer version (nothing was changed). */
  | 'ERR_ISSUER_STORE_SCHEMA_NEWER'
  /** The database has no issuer schema, or an older one: run `edgeward issuer migrate --config FILE` first. */
  | 'ERR_ISSUER_STORE_NOT_MIGRATED'
  /** A database that cannot hold the issuer store (not UTF-8 encoded, PostgreSQL older than 13). */
  | 'ERR_ISSUER_STORE_UNSUPPORTED'
  /** The issuer is draining after SIGTERM: it finishes what is in flight and takes nothing new; retry another replica (503). */
  | 'ERR_ISSUER_DRAINING'
  /** The mTLS admin port admits only operator certificates (`spiffe://<td>/operator/<name>`) this issuer signed (403). */
  | 'ERR_ISSUER_ADMIN_FORBIDDEN'
  /** No issuer answers on the admin socket (not running, or another socket path): operator commands act only through a running issuer. */
  | 'ERR_ISSUER_NOT_RUNNING'
  /** An admin request did not complete in time (the admin client's or server's timeout). */
  | 'ERR_ISSUER_ADMIN_TIMEOUT'
  /** An unexpected failure inside the issuer (500); the request changed nothing. */
  | 'ERR_ISSUER_INTERNAL';

/** A failure of `runtime/svid/` (DER, CSR, signer, bundle). */
export class SvidError extends EdgewardError<SvidErrorCode> {}

/** A refusal of the issuer; `fields` carries structured context for the audit log (never secrets). */
export class IssuerError extends EdgewardError<IssuerErrorCode> {
  readonly fields: Readonly<Record<string, unknown>>;

  constructor(
    code: IssuerErrorCode,
    message: string,
    fields: Readonly<Record<string, unknown>> = {},
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.fields = fields;
  }
}

/** Codes of `runtime/firmware/` (signed firmware manifests). */
export type FirmwareErrorCode =
  /** A manifest that is not well formed (envelope, payload, PCR values). */
  | 'ERR_MANIFEST_INVALID'
  /** A manifest signed by no configured firmware key. */
  | 'ERR_MANIFEST_UNKNOWN_KEY'
  /** A manifest whose signature does not verify. */
  | 'ERR_MANIFEST_SIGNATURE';

export class FirmwareError extends EdgewardError<FirmwareErrorCode> {}

/** Codes of `runtime/workload/` (the SPIFFE Workload API server, workload attestation, registration entries). */
export type WorkloadErrorCode =
  /** The kernel gave no peer credentials for a Workload API connection (not a Unix socket, or getsockopt failed). */
  | 'ERR_WORKLOAD_PEERCRED'
  /** /proc/<pid> of a Workload API caller could not be read, or the process changed during attestation (pid reuse). */
  | 'ERR_WORKLOAD_ATTESTATION'
  /** The kernel refused the agent /proc/<pid> of a Workload API caller running as another user (no CAP_SYS_PTRACE, hidepid, or an unreadable executable). */
  | 'ERR_WORKLOAD_ATTESTATION_DENIED'
  /** A container runtime's record of a workload's container could not be trusted or read (owner, mode, size, format, or the process is not inside that container). */
  | 'ERR_WORKLOAD_CONTAINER_METADATA'
  /** A cgroup naming a workload's container that its caller could have made (a directory from the cgroup root down to it not owned by root, or group/other-writable: a delegated subtree, as rootless containers use), or that could not be checked: no `container:id`. */
  | 'ERR_WORKLOAD_CONTAINER_UNTRUSTED'
  /** A registration entries file that is not well formed; every issue is listed with its line. */
  | 'ERR_WORKLOAD_ENTRIES_INVALID'
  /** The Workload API answered a client (`edgeward workload fetch`) with a gRPC error status. */
  | 'ERR_WORKLOAD_API_STATUS';

export class WorkloadError extends EdgewardError<WorkloadErrorCode> {}
