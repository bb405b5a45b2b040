/**
 * Error codes of `transport/` (the broker, its policy, enrollment, renewal, the device SDK and the
 * upstream bridge). Codes are stable: they appear in logs, in CBOR error answers to devices and
 * in CLI output.
 */
import { EdgewardError } from '../runtime/core/error.ts';

export type TransportErrorCode =
  /** A policy file that does not parse or validate; `issues` holds every problem with its line. */
  | 'ERR_POLICY_INVALID'
  /** The broker was used after `close()`, or a listener could not be opened. */
  | 'ERR_BROKER_CLOSED'
  | 'ERR_BROKER_LISTEN'
  /**
   * Enrollment (EST): a malformed request or answer (not base64, not a certs-only PKCS#7, wrong
   * content type, unknown path or method): HTTP 400 / 404 / 405 / 415.
   */
  | 'ERR_ENROLL_PROTOCOL'
  /** Enrollment (EST): the CSR does not parse, its self-signature does not verify or its key is weak (HTTP 400). */
  | 'ERR_ENROLL_CSR_INVALID'
  /** Enrollment (EST): the CSR names another identity (subject CN or URI SAN) than the authenticated device (HTTP 403). */
  | 'ERR_ENROLL_CSR_IDENTITY'
  /**
   * Enrollment (EST): `simplereenroll` without a valid device certificate of this gateway (none,
   * expired, not chaining to the bundle, not `<gateway ID>/device/<id>`): HTTP 401.
   */
  | 'ERR_ENROLL_CERT_REQUIRED'
  /**
   * Enrollment: no join token, or one that is unknown, already used, expired, or not the token of
   * the device id given as the HTTP Basic user name (HTTP 401 with `WWW-Authenticate: Basic`).
   */
  | 'ERR_ENROLL_TOKEN_INVALID'
  /** Enrollment: the gateway's bundle root does not have the fingerprint the token carries. */
  | 'ERR_ENROLL_GATEWAY_UNTRUSTED'
  /** Enrollment: a factory certificate that does not chain to a manufacturer root or is not allowed (HTTP 403). */
  | 'ERR_ENROLL_FACTORY_REFUSED'
  /** Enrollment: too many attempts from one address (HTTP 429 with `Retry-After`). */
  | 'ERR_ENROLL_RATE_LIMITED'
  /** Enrollment or renewal: the gateway could not sign (CA unavailable, clock untrusted): HTTP 503 on EST. */
  | 'ERR_ENROLL_REFUSED'
  /** Enrollment: the device id (or its certificate) is revoked; neither a join token, a factory certificate nor re-enrollment enrolls it again (HTTP 403). */
  | 'ERR_ENROLL_DEVICE_REVOKED'
  /**
   * Enrollment listener: a request body over 16 KiB (HTTP 413) or a request not done within its
   * time budget (HTTP 408 when an answer can still be written); the connection is then closed.
   */
  | 'ERR_ENROLL_BUDGET'
  /**
   * A SUBSCRIBE to `$share/…` that is not `$share/<group>/<filter>` with one non-empty group level
   * without `+`/`#` and a valid filter: refused (SUBACK 0x80, logged with this code).
   */
  | 'ERR_SHARED_SUBSCRIPTION_MALFORMED'
  /**
   * A SUBSCRIBE to `$share/<group>/<filter>` that no `$share` grant of the policy covers (plain
   * grants never grant shared filters): refused (SUBACK 0x80, logged with this code).
   */
  | 'ERR_SHARED_SUBSCRIPTION_DENIED'
  /**
   * The broker's session journal (transport/mqtt/persistence): an entry that does not decode is
   * dropped with this code in the log, and the broker starts without it.
   */
  | 'ERR_MQTT_JOURNAL_CORRUPT'
  /** The broker's session journal could not be written (the message was not acknowledged as stored). */
  | 'ERR_MQTT_JOURNAL_WRITE'
  /** Renewal over MQTT: refused by the gateway, or no answer in time. */
  | 'ERR_RENEW_REFUSED'
  | 'ERR_RENEW_TIMEOUT'
  /** Device SDK: the stored identity cannot be loaded and no token was given to enroll. */
  | 'ERR_DEVICE_IDENTITY'
  /** Device SDK: a bundle message on `$edgeward/bundle` that is malformed, for another trust domain, or older than the one in use. */
  | 'ERR_DEVICE_BUNDLE_INVALID'
  /** CLI → agent admin socket: not reachable, or the agent refused the request. */
  | 'ERR_ADMIN_UNREACHABLE'
  | 'ERR_ADMIN_REFUSED';

export class TransportError extends EdgewardError<TransportErrorCode> {}

/** One problem of a policy file: `path` as `rules[0].publish[1]`, what is wrong, and its line. */
export interface PolicyIssue {
  readonly path: string;
  readonly message: string;
  readonly line: number | undefined;
}

export class PolicyError extends TransportError {
  readonly issues: readonly PolicyIssue[];

  constructor(issues: readonly PolicyIssue[], file?: string) {
    super(
      'ERR_POLICY_INVALID',
      `${file ?? 'policy'}: ${issues.map((i) => `${i.line === undefined ? '' : `line ${i.line}: `}${i.path ? `${i.path}: ` : ''}${i.message}`).join('; ')}`,
    );
    this.issues = issues;
  }
}
