/**
 * Shared set-up of the transport suites: a test PKI valid at the virtual clock's time, static
 * sources, a broker on port 0, and an mqtt.js client with a device identity.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { MemoryLogger } from '../../runtime/core/logger.ts';
import {
  StaticBundleSource,
  StaticRevocationSource,
  StaticSvidSource,
} from '../../runtime/sources/static.ts';
import { VirtualClock } from '../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../sim/random.ts';
import { issueJoinToken } from '../../transport/enroll/join-token.ts';
import { MemoryTokenStore } from '../../transport/enroll/token-store.ts';
import { type BrokerOptions, startBroker } from '../../transport/mqtt/broker.ts';
import { buildPki, type Issued, type TestPki } from '../helpers/pki.ts';

export interface Rig {
  pki: TestPki;
  clock: VirtualClock;
  logger: MemoryLogger;
  svids: StaticSvidSource;
  bundles: StaticBundleSource;
  revocations: StaticRevocationSource;
  tokens: MemoryTokenStore;
  broker: Awaited<ReturnType<typeof startBroker>>;
  port: number;
  tmp: string;
  connect(who: Issued, opts?: Partial<mqtt.IClientOptions>): Promise<MqttClient>;
  /** A join token for `deviceId` in the rig's token store (default lifetime 10 min). */
  joinToken(deviceId: string, ttlMs?: number): Promise<string>;
  close(): Promise<void>;
}

export async function rig(
  extra: Partial<BrokerOptions> | ((pki: TestPki) => Partial<BrokerOptions>) = {},
): Promise<Rig> {
  const clock = new VirtualClock(Date.now());
  const pki = await buildPki({ now: clock.now() });
  const logger = new MemoryLogger();
  const svids = new StaticSvidSource(pki.gateway.svid, clock);
  const bundles = new StaticBundleSource([pki.bundle]);
  const revocations = new StaticRevocationSource();
  const tokens = new MemoryTokenStore();
  const broker = await startBroker({
    svidSource: svids,
    bundleSource: bundles,
    revocationSource: revocations,
    deviceSigner: pki.signer(clock),
    tokenStore: tokens,
    trustDomain: pki.trustDomain,
    clock,
    logger,
    listen: { host: '127.0.0.1', port: 0 },
    enrollment: { host: '127.0.0.1', port: 0 },
    ...(typeof extra === 'function' ? extra(pki) : extra),
  });
  const clients: MqttClient[] = [];
  const port = broker.addresses.mqtt.port;
  // One stream for every token of the rig: two tokens never share an id.
  const tokenRandom = seededRandom('rig-join-tokens');
  return {
    pki,
    clock,
    logger,
    svids,
    bundles,
    revocations,
    tokens,
    broker,
    port,
    tmp: mkdtempSync(join(tmpdir(), 'edgeward-transport-')),
    async connect(who, opts = {}) {
      const c = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
        key: who.pem.key,
        cert: who.pem.cert,
        ca: pki.bundlePem,
        clientId: who.id.split('/').pop() as string,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        keepalive: 30,
        ...opts,
      });
      clients.push(c);
      await new Promise<void>((resolve, reject) => {
        c.once('connect', () => resolve());
        c.once('error', reject);
        c.once('close', () => reject(new Error('closed before CONNACK')));
      });
      return c;
    },
    async joinToken(deviceId, ttlMs = 600_000) {
      const t = await issueJoinToken({
        store: tokens,
        random: tokenRandom,
        clock,
        bundle: pki.bundle,
        deviceId,
        ttlMs,
      });
      return t.token;
    },
    async close() {
      for (const c of clients) c.end(true);
      await broker.close();
    },
  };
}

/** Resolves when `client` closes. */
export function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (client.disconnected || !client.connected) resolve();
    client.once('close', () => resolve());
  });
}

/** Resolves with the next message on `client` whose topic is `topic`. */
export function nextMessage(client: MqttClient, topic: string): Promise<Buffer> {
  return new Promise((resolve) => {
    const on = (t: string, payload: Buffer): void => {
      if (t === topic) {
        client.off('message', on);
        resolve(payload);
      }
    };
    client.on('message', on);
  });
}

/** Try to connect and return the CONNACK error code, or 'closed' when the connection just closed. */
export function connectFailure(
  port: number,
  who: Issued,
  bundlePem: string,
  opts: Partial<mqtt.IClientOptions> = {},
): Promise<number | string> {
  return new Promise((resolve) => {
    const c = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
      key: who.pem.key,
      cert: who.pem.cert,
      ca: bundlePem,
      clientId: who.id.split('/').pop() as string,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ...opts,
    });
    c.once('connect', () => {
      c.end(true);
      resolve('connected');
    });
    c.once('error', (err: Error & { code?: number | string }) => {
      c.end(true);
      resolve(err.code ?? err.message);
    });
    c.once('close', () => {
      c.end(true);
      resolve('closed');
    });
  });
}

/** A raw TLS connection to the broker with a device identity, for hand-built (and broken) packets. */
export async function rawTls(
  port: number,
  who: Issued,
  bundlePem: string,
): Promise<import('node:tls').TLSSocket> {
  const { connect } = await import('node:tls');
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, key: who.pem.key, cert: who.pem.cert, ca: bundlePem });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

/** An MQTT 3.1.1 CONNECT packet. */
export function connectPacket(clientId: string, clean: boolean, keepalive = 30): Buffer {
  const id = Buffer.from(clientId);
  const body = Buffer.concat([
    Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, clean ? 2 : 0, keepalive >> 8, keepalive & 0xff]),
    Buffer.from([id.length >> 8, id.length & 0xff]),
    id,
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

/** Resolves with everything the socket receives until it closes (or `ms` pass). */
export function collect(
  socket: import('node:tls').TLSSocket,
  ms = 3000,
): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    socket.on('data', (d: Buffer) => parts.push(d));
    const t = setTimeout(() => resolve({ data: Buffer.concat(parts), closed: false }), ms);
    socket.once('close', () => {
      clearTimeout(t);
      resolve({ data: Buffer.concat(parts), closed: true });
    });
  });
}
