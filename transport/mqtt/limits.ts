/**
 * Broker limits and their defaults. Connection count is enforced by `tls.Server.maxConnections`,
 * the per-identity cap by the policy (`authenticate`), keepalive bounds at CONNECT, and the
 * packet size as the MQTT fixed header's Remaining Length arrives, before the payload is buffered.
 */
import type { Client } from 'aedes';

export interface BrokerLimits {
  /** Open sockets on the main listener (default 2000). */
  readonly maxConnections?: number;
  /** Largest MQTT packet accepted, bytes (default 256 KiB). */
  readonly maxPacketSize?: number;
  /** CONNECT keepalive must be within [min, max] seconds (defaults 1 and 3600; 0 is refused). */
  readonly keepaliveMin?: number;
  readonly keepaliveMax?: number;
  /** TLS handshake and MQTT CONNECT must complete within these (defaults 10 s each). */
  readonly handshakeTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  /** Enrollment attempts per remote address per minute (default 10). */
  readonly enrollPerMinute?: number;
}

export const DEFAULT_LIMITS = {
  maxConnections: 2000,
  maxPacketSize: 256 * 1024,
  keepaliveMin: 1,
  keepaliveMax: 3600,
  handshakeTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  enrollPerMinute: 10,
} as const satisfies Required<BrokerLimits>;

interface Parser {
  packet: { length: number };
  _parseLength(): boolean;
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
    this._emitError(new Error(`packet of ${this.packet.length} bytes exceeds the limit of ${max}`));
    return false;
  }
  return ok;
}

/**
 * Refuse a packet whose Remaining Length exceeds `max` as soon as the length is parsed, so an
 * oversized payload is never buffered. This reaches into aedes 1.2's per-client mqtt-packet
 * parser (`client._parser`), which has no size option of its own.
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
  }
  parser._edgewardMaxPacket = max;
}
