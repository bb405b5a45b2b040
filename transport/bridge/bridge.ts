/**
 * The upstream bridge (optional): forwards configured local topics to a cloud MQTT broker over
 * mTLS with the gateway SVID as client certificate. QoS 1 messages go through the LevelDB
 * offline buffer in order — appended first, removed when the upstream acknowledged them — so
 * nothing is lost while the upstream is away or the gateway restarts (within the buffer's
 * bounds); QoS 0 messages are sent only while connected. When the SVID rotates, the bridge
 * reconnects with the new certificate. Started while the gateway SVID is unavailable (a restart
 * after it expired, local service still up under the delegated CA), it buffers and connects as
 * soon as the source has one.
 *
 * @example
 * ```ts
 * const bridge = await startBridge({
 *   broker: aedes, svidSource, upstream: { host: 'mqtt.cloud.example', port: 8883, ca: cloudRootsPem },
 *   topics: [{ local: 'devices/+/telemetry', remotePrefix: 'gateways/gw-1/' }],
 *   buffer: { db: level.sublevel('bridge', { valueEncoding: 'view' }), maxMessages: 10_000, maxBytes: 16 << 20 },
 * });
 * bridge.stats(); // { connected, buffered, bufferedBytes, dropped, forwarded, reconnects }
 * ```
 */
import { createSecureContext, type SecureContext, connect as tlsConnect } from 'node:tls';
import type { AedesPublishPacket } from 'aedes';
import { MqttClient } from 'mqtt';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { type Logger, nullLogger } from '../../runtime/core/logger.ts';
import type { SvidSource, X509Svid } from '../../runtime/sources/types.ts';
import { parseSpiffeId } from '../../runtime/spiffe/id.ts';
import { type BufferDb, OfflineBuffer } from './buffer.ts';

/** The part of aedes the bridge uses. */
export interface LocalBroker {
  subscribe(
    topic: string,
    deliver: (packet: AedesPublishPacket, cb: () => void) => void,
    done: () => void,
  ): void;
  unsubscribe(
    topic: string,
    deliver: (packet: AedesPublishPacket, cb: () => void) => void,
    done: () => void,
  ): void;
}

export interface BridgeOptions {
  readonly broker: LocalBroker;
  readonly svidSource: SvidSource;
  /** The cloud broker; `ca` holds the PEM roots its server certificate must chain to. */
  readonly upstream: {
    readonly host: string;
    readonly port: number;
    readonly ca: string;
    readonly servername?: string;
  };
  /** Local topic filters to forward; `remotePrefix` is prepended upstream. */
  readonly topics: readonly { readonly local: string; readonly remotePrefix?: string }[];
  readonly buffer: { readonly db: BufferDb; readonly maxMessages: number; readonly maxBytes: number };
  readonly logger?: Logger;
  /** mqtt.js reconnect period, ms (default 1000). */
  readonly reconnectMs?: number;
  /** The gateway's SPIFFE ID, for the client id when the SVID is unavailable at start. */
  readonly gatewayId?: string;
}

export interface BridgeStats {
  connected: boolean;
  buffered: number;
  bufferedBytes: number;
  dropped: number;
  forwarded: number;
  reconnects: number;
}

export interface Bridge {
  stats(): BridgeStats;
  close(): Promise<void>;
}

function contextOf(svidSource: SvidSource, ca: string): SecureContext {
  return contextFor(svidSource.getX509Svid(), ca);
}

function contextFor(svid: X509Svid, ca: string): SecureContext {
  return createSecureContext({
    key: svid.privateKey.export({ type: 'pkcs8', format: 'pem' }),
    cert: svid.chain.map((c) => c.toString()).join(''),
    ca,
    minVersion: 'TLSv1.2',
  });
}

export async function startBridge(o: BridgeOptions): Promise<Bridge> {
  const logger = o.logger ?? nullLogger;
  const buffer = await OfflineBuffer.open(o.buffer.db, o.buffer);
  // No SVID yet (expired before a restart): buffer now, connect once the source has one.
  let first: X509Svid | undefined;
  try {
    first = o.svidSource.getX509Svid();
  } catch (err) {
    if (o.gatewayId === undefined || !isEdgewardError(err, 'ERR_SVID_UNAVAILABLE')) throw err;
    logger.warn('bridge waits for a valid gateway SVID', { code: err.code });
  }
  let context = first === undefined ? undefined : contextFor(first, o.upstream.ca);
  const id = parseSpiffeId(first?.spiffeId ?? (o.gatewayId as string));
  let forwarded = 0;
  let reconnects = 0;
  let closed = false;

  const newClient = (): MqttClient => {
    const c = new MqttClient(
      () =>
        tlsConnect({
          host: o.upstream.host,
          port: o.upstream.port,
          ...(context === undefined ? {} : { secureContext: context }),
          ...(o.upstream.servername === undefined ? {} : { servername: o.upstream.servername }),
        }),
      {
        clientId: `edgeward-${id.segments.join('-')}`.slice(0, 64),
        clean: true,
        reconnectPeriod: o.reconnectMs ?? 1000,
        keepalive: 30,
        protocolVersion: 4,
        queueQoSZero: false,
      },
    );
    c.on('reconnect', () => reconnects++);
    c.on('error', (err) => logger.warn('bridge upstream error', { reason: err.message }));
    c.on('connect', () => {
      logger.info('bridge connected upstream', { host: o.upstream.host, port: o.upstream.port });
      drain();
    });
    return c;
  };
  // Created once there is an SVID to connect with (mqtt.js manualConnect leaks a reconnect timer after end()).
  let client: MqttClient | undefined = context === undefined ? undefined : newClient();

  // One sender: oldest buffered message first, the next only after its PUBACK.
  let draining = false;
  function drain(): void {
    if (draining || closed || client?.connected !== true) return;
    draining = true;
    const step = async (): Promise<void> => {
      for (;;) {
        const c = client;
        if (closed || c?.connected !== true) return;
        const m = await buffer.peek();
        if (m === undefined) return;
        await c.publishAsync(m.topic, m.payload, { qos: 1 });
        await buffer.ack(m.key);
        forwarded++;
      }
    };
    step()
      .catch((err: Error) => logger.info('bridge send interrupted', { reason: err.message }))
      .finally(() => {
        draining = false;
      });
  }

  const delivers = o.topics.map((t) => {
    const deliver = (packet: AedesPublishPacket, cb: () => void): void => {
      const topic = (t.remotePrefix ?? '') + packet.topic;
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      if (packet.qos === 0) {
        if (client?.connected === true) {
          client.publish(topic, payload, { qos: 0 });
          forwarded++;
        }
        cb();
        return;
      }
      buffer.append(topic, payload).then(
        () => {
          cb();
          drain();
        },
        (err: Error) => {
          logger.error('bridge buffer write failed', { reason: err.message });
          cb();
        },
      );
    };
    return { topic: t.local, deliver };
  });
  await Promise.all(delivers.map((d) => new Promise<void>((r) => o.broker.subscribe(d.topic, d.deliver, r))));

  const offRotate = o.svidSource.onChange(() => {
    try {
      const waited = context === undefined;
      context = contextOf(o.svidSource, o.upstream.ca);
      if (waited) {
        logger.info('bridge connecting with the gateway SVID');
        if (!closed) client = newClient();
        return;
      }
      logger.info('bridge reconnecting with the rotated certificate');
      // mqtt.js reconnects through the stream builder, which now uses the new context.
      client?.stream?.end();
    } catch (err) {
      logger.error('bridge certificate not rotated', { reason: (err as Error).message });
    }
  });

  return {
    stats: () => ({
      connected: client?.connected === true,
      buffered: buffer.size,
      bufferedBytes: buffer.bytes,
      dropped: buffer.dropped,
      forwarded,
      reconnects,
    }),
    async close() {
      if (closed) return;
      closed = true;
      offRotate();
      await Promise.all(
        delivers.map((d) => new Promise<void>((r) => o.broker.unsubscribe(d.topic, d.deliver, r))),
      );
      await client?.endAsync(true);
    },
  };
}
