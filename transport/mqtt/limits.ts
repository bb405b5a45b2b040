/**
 * Broker limits and their defaults. Connection count is enforced by `tls.Server.maxConnections`,
 * the per-identity cap by the policy (`authenticate`), keepalive bounds at CONNECT, and the
 * packet size as the MQTT fixed header's Remaining Length arrives, before the payload is buffered.
 */
import { isUtf8 } from 'node:buffer';
import type { Client } from 'aedes';
import { TransportError } from '../errors.ts';

export interface BrokerLimits {
  /** Open sockets on the main listener (default 2000). */
  readonly maxConnections?: number;
  /** Largest MQTT packet accepted, bytes (default 256 KiB). */
  readonly maxPacketSize?: number;
  /**
   * CONNECT keepalive must be within [min, max] seconds (defaults 0 and 3600). 0 means "keepalive
   * off" (MQTT 3.1.1 §3.1.2.10) and is accepted by default; set `keepaliveMin: 1` to refuse it.
   */
  readonly keepaliveMin?: number;
  readonly keepaliveMax?: number;
  /**
   * A connection with no traffic either way for this long is closed, whatever keepalive the
   * client chose (default 90 min = 1.5 × the default `keepaliveMax`, so a client honouring any
   * accepted keepalive is never cut).
   */
  readonly maxIdleMs?: number;
  /** TLS handshake and MQTT CONNECT must complete within these (defaults 10 s each). */
  readonly handshakeTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  /**
   * Enrollment attempts per remote address per minute (default 10); also the certificates one
   * device id may get per minute over EST and MQTT renewal together (`limitingIssuance`).
   */
  readonly enrollPerMinute?: number;
  /** Topic names (PUBLISH and wills): at most this many levels (default 32, at most 100) and UTF-8 bytes (default 1024). */
  readonly maxTopicLevels?: number;
  readonly maxTopicBytes?: number;
  /**
   * aedes' heartbeat (default 60 s); stored wills of a previous (crashed) broker are checked and
   * published every 4 heartbeats, so 4 min after a restart by default.
   */
  readonly heartbeatIntervalMs?: number;
  /**
   * Retained messages (`retained.ts`): per SPIFFE ID at most this many (default 100) and bytes of
   * topic + payload (default 1 MiB); in all at most `maxRetained` (default 10,000) and
   * `maxRetainedBytes` (default 32 MiB).
   */
  readonly maxRetainedPerIdentity?: number;
  readonly maxRetainedBytesPerIdentity?: number;
  readonly maxRetained?: number;
  readonly maxRetainedBytes?: number;
}

export const DEFAULT_LIMITS = {
  maxConnections: 2000,
  maxPacketSize: 256 * 1024,
  keepaliveMin: 0,
  maxIdleMs: 5_400_000,
  keepaliveMax: 3600,
  handshakeTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  enrollPerMinute: 10,
  maxTopicLevels: 32,
  maxTopicBytes: 1024,
  heartbeatIntervalMs: 60_000,
  maxRetainedPerIdentity: 100,
  maxRetainedBytesPerIdentity: 1024 * 1024,
  maxRetained: 10_000,
  maxRetainedBytes: 32 * 1024 * 1024,
} as const satisfies Required<BrokerLimits>;

interface Parser {
  packet: { length: number };
  _pos: number;
  _list: { slice(start: number, end: number): Buffer };
  error: Error | null;
  _parseLength(): boolean;
  _parseString(): string | null;
  _emitError(err: Error): void;
  /** Set by `limitPacketSize`: the largest Remaining Length accepted. */
  _edgewardMaxPacket?: number;
}

/** The prototype's own length parser, captured from the first client (mqtt-packet's `Parser`). */
let parseLength: ((this: Parser) => boolean) | undefined;

/** One function for every client (no closure per connection): the limit lives on the parser. */
function limitedParseLength(this: Parser): boolean {
  const ok = (parseLength as (this: Parser) => boolean).call(this);
  const max = this._edgewardMaxPacket ?? 0;
  if (ok && this.packet.length > max) {
    this._emitError(
      new TransportError(
        'ERR_MQTT_PACKET_TOO_LARGE',
        `packet of ${this.packet.length} bytes exceeds the limit of ${max}`,
      ),
    );
    return false;
  }
  return ok;
}

/** The prototype's own string parser (`_parseString`), captured like `parseLength`. */
let parseString: ((this: Parser) => string | null) | undefined;

/**
 * Every UTF-8 string field of a packet (protocol name, client id, will topic, user name, topic
 * names and filters) must be well-formed UTF-8 without U+0000, or the connection is closed
 * [MQTT-1.5.3-1], [MQTT-1.5.3-2]. mqtt-packet decodes them with replacement characters, so the
 * bytes are checked here, where they are still at hand. Setting the parser's error stops it before
 * the packet is emitted; aedes then closes the connection (logged with ERR_MQTT_UTF8_INVALID).
 */
function strictParseString(this: Parser): string | null {
  const start = this._pos + 2;
  const result = (parseString as (this: Parser) => string | null).call(this);
  if (result === null || this._pos === start) return result;
  const bytes = this._list.slice(start, this._pos);
  if (bytes.includes(0) || !isUtf8(bytes))
    this._emitError(
      new TransportError(
        'ERR_MQTT_UTF8_INVALID',
        bytes.includes(0) ? 'string contains U+0000' : 'string is not well-formed UTF-8',
      ),
    );
  return result;
}

/**
 * Refuse a packet whose Remaining Length exceeds `max` as soon as the length is parsed, so an
 * oversized payload is never buffered, and close a connection whose strings are not well-formed
 * UTF-8 (`strictParseString`). This reaches into aedes 1.2's per-client mqtt-packet parser
 * (`client._parser`), which has no size option nor UTF-8 check of its own.
 */
export function limitPacketSize(client: Client, max: number): void {
  const parser = (client as unknown as { _parser?: Parser })._parser;
  if (parser === undefined || typeof parser._parseLength !== 'function') {
    throw new TypeError('aedes client has no mqtt-packet parser: packet size cannot be limited');
  }
  if (parser._parseLength !== limitedParseLength) {
    const own = (Object.getPrototypeOf(parser) as Parser)._parseLength;
    if (parseLength === undefined) parseLength = own;
    else if (own !== parseLength)
      throw new TypeError('mqtt-packet parser changed: packet size cannot be limited');
    parser._parseLength = limitedParseLength;
    const ownString = (Object.getPrototypeOf(parser) as Parser)._parseString;
    if (parseString === undefined) parseString = ownString;
    else if (ownString !== parseString)
      throw new TypeError('mqtt-packet parser changed: strings cannot be checked');
    parser._parseString = strictParseString;
  }
  parser._edgewardMaxPacket = max;
}
