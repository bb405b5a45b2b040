/**
 * Error codes of `transport/` (the broker, its policy, enrollment, renewal, the device SDK and the
 * upstream bridge). Codes are stable: they appear in logs, in EST refusal bodies and MQTT renewal
 * replies to devices, and in CLI output.
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
  /** Enrollment: none of the gateway's bundle roots has a fingerprint the token (or the factory provisioning) carries. */
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
  /** MQTT PUBLISH refused: the topic, or the retain flag on it, is not granted to the caller by the policy (the connection is closed: MQTT 3.1.1 has no PUBLISH refusal). */
  | 'ERR_MQTT_PUBLISH_DENIED'
  /** MQTT PUBLISH or will refused: a reserved `$edgeward/` topic, which only the gateway itself writes (a device only its own renewal request). */
  | 'ERR_MQTT_RESERVED_TOPIC'
  /** MQTT: a client without a verified TLS session (cannot happen on the mTLS listener; checked anyway). */
  | 'ERR_MQTT_NO_SESSION'
  /** MQTT CONNECT refused with CONNACK 2: the client id is not the device id, or empty with a persistent session [MQTT-3.1.3-8]. */
  | 'ERR_MQTT_CLIENT_ID_REJECTED'
  /** MQTT CONNECT refused with CONNACK 5: keepalive outside the configured bounds. */
  | 'ERR_MQTT_KEEPALIVE_REFUSED'
  /** MQTT CONNECT refused with CONNACK 5: no policy rule matches the identity. */
  | 'ERR_MQTT_NO_POLICY_RULE'
  /** MQTT CONNECT refused with CONNACK 3: the identity's connection cap is reached. */
  | 'ERR_MQTT_CONNECTION_CAP'
  /** MQTT SUBSCRIBE refused for one filter (SUBACK 0x80): not granted by the policy. */
  | 'ERR_MQTT_SUBSCRIBE_DENIED'
  /** MQTT: a topic name (PUBLISH or will) that is empty, has a wildcard or NUL, or exceeds the broker's topic levels or length: refused (will: CONNACK 5; PUBLISH: disconnect). */
  | 'ERR_MQTT_TOPIC_INVALID'
  /** MQTT: a connection with no traffic for the broker's `maxIdleMs` is closed (a defence that does not depend on the client's keepalive, which may be 0). */
  | 'ERR_MQTT_IDLE_TIMEOUT'
  /** MQTT CONNECT refused with CONNACK 2: the client id is in use by a session of another SPIFFE identity (live or persistent); only the same identity may take a session over. */
  | 'ERR_MQTT_SESSION_TAKEOVER'
  /** MQTT: a retained PUBLISH (or retained will) refused because its identity, or the broker, holds the configured maximum of retained messages or bytes (the connection is closed); also logged when a restored store exceeds the caps and the excess is dropped. */
  | 'ERR_MQTT_RETAINED_CAP'
  /** MQTT: a packet whose Remaining Length exceeds the broker's `maxPacketSize`: the connection is closed before the payload is buffered. */
  | 'ERR_MQTT_PACKET_TOO_LARGE'
  /** MQTT: a string field (topic, filter, client id) that is not well-formed UTF-8 or contains U+0000: the connection is closed [MQTT-1.5.3-1], [MQTT-1.5.3-2]. */
  | 'ERR_MQTT_UTF8_INVALID'
  /**
   * MQTT will refused: at CONNECT (CONNACK 5) when its owner may not publish (or retain) it, and
   * at publication (live or replayed from the journal after a restart) when its owner is unknown,
   * revoked or no longer granted it; a refused stored will is deleted.
   */
  | 'ERR_MQTT_WILL_DENIED'
  /** An `'error'` event of aedes or of the session persistence: logged with this code; the broker keeps running. */
  | 'ERR_MQTT_BROKER_ERROR'
  /** Renewal over MQTT: refused by the gateway, or no answer in time. */
  | 'ERR_RENEW_REFUSED'
  | 'ERR_RENEW_TIMEOUT'
  /** Device SDK: the stored identity cannot be loaded and no token was given to enroll. */
  | 'ERR_DEVICE_IDENTITY'
  /** Device SDK: a bundle message on `$edgeward/bundle` that is malformed, for another trust domain, or older than the one in use. */
  | 'ERR_DEVICE_BUNDLE_INVALID'
  /**
   * Device SDK: a bundle message not signed by the device's own gateway under a chain to a root the
   * device already trusts (unsigned, forged, another identity's signature, an expired signer): refused
   * whatever topic it came on, and it moves nothing (a later real bundle is still adopted).
   */
  | 'ERR_DEVICE_BUNDLE_UNAUTHENTICATED'
  /** Device SDK: the server's certificate is not a valid server SVID whose SPIFFE ID is exactly the device's gateway. */
  | 'ERR_DEVICE_GATEWAY_UNAUTHORIZED'
  /**
   * Device SDK: the device SVID has expired (e.g. the device was powered off past its NotAfter) and it
   * cannot re-enroll by itself (no factory certificate, or the gateway refused it): the device stops
   * retrying and needs a new join token.
   */
  | 'ERR_DEVICE_SVID_EXPIRED'
  /** Device SDK: `rotate()` called after `close()`, or after the device locked itself out (`ERR_DEVICE_SVID_EXPIRED`). */
  | 'ERR_DEVICE_CLOSED'
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
