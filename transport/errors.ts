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
  /** Enrollment: malformed request or answer on the enrollment wire. */
  | 'ERR_ENROLL_PROTOCOL'
  /** Enrollment: the join token is unknown, already used or expired. */
  | 'ERR_ENROLL_TOKEN_INVALID'
  /** Enrollment: the gateway's bundle root does not have the fingerprint the token carries. */
  | 'ERR_ENROLL_GATEWAY_UNTRUSTED'
  /** Enrollment: a factory certificate that does not chain to a manufacturer root or is not allowed. */
  | 'ERR_ENROLL_FACTORY_REFUSED'
  /** Enrollment: too many attempts from one address. */
  | 'ERR_ENROLL_RATE_LIMITED'
  /** Enrollment or renewal: the gateway could not sign (CSR refused, CA unavailable). */
  | 'ERR_ENROLL_REFUSED'
  /** Enrollment: the device id is revoked; neither a join token nor a factory certificate enrolls it again. */
  | 'ERR_ENROLL_DEVICE_REVOKED'
  /**
   * Enrollment listener: a connection that sent more than one request frame's bytes or did not
   * finish within its time budget; it is destroyed (logged with this code).
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
