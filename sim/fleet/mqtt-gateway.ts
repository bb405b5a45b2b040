/**
 * The real-socket part of one simulated gateway: its broker (transport/mqtt `startBroker` on the
 * agent's own SvidSource, BundleSource, RevocationSource and device signer, on 127.0.0.1) and a
 * few device-SDK devices (`connectDevice`) that publish QoS 1 messages with sequence numbers,
 * plus one more device, `collector`, that the policy lets subscribe to every device's telemetry.
 * The QoS 1 ledger (qos-ledger.ts) books what each publisher got a PUBACK for and what the
 * collector received.
 *
 * Time: the agent, the broker's session timers and the devices' rotation timers run on virtual
 * time (the broker on the gateway's clock, the devices on the fleet's true clock); the sockets,
 * mqtt.js reconnects and keepalives are real. After every virtual step the fleet lets real time
 * run (`quiet()`) until every message is acknowledged and delivered, or a short cap passes.
 *
 * Restarts: `kill()` is the process dying: the broker is closed at once, mid-traffic, its
 * sockets destroyed and its in-memory sessions gone; `stop()` is a graceful shutdown. The next
 * incarnation's broker listens on the same port, and the devices reconnect on their own.
 *
 * @example
 * ```ts
 * const m = new MqttGateway(gw, { devices: 5, dir, clock, random, trustDomain });
 * await m.ensure(step);  // broker up once the agent serves; devices enrolled once
 * m.burst(step, 2);      // every device publishes 2 QoS 1 messages
 * ```
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { type Clock, sleep } from '../../runtime/core/clock.ts';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { nullLogger } from '../../runtime/core/logger.ts';
import type { Random } from '../../runtime/core/random.ts';
import { createCsr } from '../../runtime/svid/csr.ts';
import { writeIdentity } from '../../transport/device/files.ts';
import { connectDevice, type Device } from '../../transport/device/index.ts';
import { MemoryTokenStore } from '../../transport/enroll/token-store.ts';
import { type Broker, startBroker } from '../../transport/mqtt/broker.ts';
import type { JournalDb } from '../../transport/mqtt/persistence/journal.ts';
import { DEFAULT_POLICY } from '../../transport/policy/default.ts';
import type { Policy } from '../../transport/policy/schema.ts';
import type { SimGateway } from './gateway.ts';
import { QosLedger } from './qos-ledger.ts';

export const COLLECTOR = 'collector';
const TELEMETRY = /^devices\/([^/]+)\/telemetry$/;

/** The broker's default policy (devices under their own subtree), plus: the collector may read every device's telemetry. */
export const FLEET_POLICY: Policy = {
  ...DEFAULT_POLICY,
  rules: [
    ...DEFAULT_POLICY.rules,
    { match: `{self}/device/${COLLECTOR}`, clientId: 'device', subscribe: ['devices/+/telemetry'] },
  ],
};

export interface MqttGatewayOptions {
  readonly devices: number;
  readonly dir: string;
  /** The fleet's true virtual clock (the devices' clock). */
  readonly clock: Clock;
  readonly random: Random;
  readonly trustDomain: string;
  /** Real time, for the bounded wait when the devices are closed at the end. */
  readonly realClock: Clock;
}

export class MqttGateway {
  readonly gw: SimGateway;
  readonly ledger = new QosLedger();
  broker: Broker | undefined;
  port = 0;
  publishers: Device[] = [];
  collector: Device | undefined;
  /** Step since which the collector has been connected and subscribed (undefined: it is not). */
  collectorSince: number | undefined;
  brokerStarts = 0;
  /** Devices provisioned again because their SVID expired while they could not reach the gateway. */
  reenrolled = 0;
  /** Device SVID rotations over MQTT that completed, and that failed (each retried by the SDK). */
  deviceRotations = 0;
  deviceRotationFailures: string[] = [];
  listenRetries = 0;
  readonly #o: MqttGatewayOptions;
  #step = 0;
  #enrolling: Promise<void> | undefined;
  #closed = false;

  constructor(gw: SimGateway, o: MqttGatewayOptions) {
    this.gw = gw;
    this.#o = o;
  }

  /** Start the broker when the agent serves and none runs; enroll the devices the first time. */
  async ensure(step: number): Promise<void> {
    this.#step = step;
    const agent = this.gw.agent;
    if (this.#closed || agent === undefined || !agent.status().serving) return;
    if (this.broker === undefined) {
      try {
        this.broker = await startBroker({
          svidSource: agent.svidSource,
          bundleSource: agent.bundleSource,
          revocationSource: agent.revocations,
          deviceSigner: agent.deviceSigner,
          tokenStore: new MemoryTokenStore(),
          trustDomain: this.#o.trustDomain,
          policy: FLEET_POLICY,
          clock: this.gw.clock,
          listen: { host: '127.0.0.1', port: this.port },
          // As the agent does (runtime/agent/run.ts): persistent sessions journaled in the store.
          persistence: {
            db: this.gw.db.sublevel<string, Uint8Array>('mqtt', {
              keyEncoding: 'utf8',
              valueEncoding: 'view',
            }) as unknown as JournalDb,
          },
        });
      } catch (err) {
        // The port of the previous incarnation not yet free: the next step tries again.
        if (!isEdgewardError(err) || err.code !== 'ERR_BROKER_LISTEN') throw err;
        this.listenRetries++;
        return;
      }
      this.port = this.broker.addresses.mqtt.port;
      this.brokerStarts++;
    }
    if (this.collector === undefined) {
      this.#enrolling ??= this.#enroll().finally(() => {
        this.#enrolling = undefined;
      });
      await this.#enrolling;
    }
    await this.#reenrollLockedOut();
  }

  /**
   * A device whose SVID expired while it could not reach the gateway (for example when the
   * gateway's own SVID expired in a long issuer outage) is locked out: it cannot renew without a
   * connection. It is provisioned again, as an operator would re-enroll it, and counted.
   */
  async #reenrollLockedOut(): Promise<void> {
    const now = this.#o.clock.now();
    const out = (d: Device): boolean => !d.client.connected && d.notAfter <= now;
    for (let i = 0; i < this.publishers.length; i++) {
      const d = this.publishers[i] as Device;
      if (!out(d)) continue;
      d.client.end(true);
      this.ledger.abandonAll(d.deviceId);
      this.publishers[i] = await this.#provision(d.deviceId);
      this.reenrolled++;
    }
    const c = this.collector;
    if (c !== undefined && out(c)) {
      c.client.end(true);
      this.collector = undefined;
      this.collectorSince = undefined;
      this.collector = await this.#provisionCollector();
      this.reenrolled++;
    }
  }

  /** Provision the devices as a factory would (key, SVID from the delegated CA, bundle) and connect them. */
  async #enroll(): Promise<void> {
    this.collector = await this.#provisionCollector();
    for (let i = 0; i < this.#o.devices; i++) this.publishers.push(await this.#provision(`m${i}`));
  }

  async #provision(id: string): Promise<Device> {
    const agent = this.gw.agent;
    if (agent === undefined) throw new TypeError(`${this.gw.name} is not running`);
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const out = await agent.deviceSigner.signDevice({ deviceId: id, csrDer: createCsr(key, id) });
    const roots = agent.bundleSource.getBundleFor(this.#o.trustDomain).roots;
    const dir = join(this.#o.dir, `mqtt-${id}`);
    await writeIdentity(dir, { key, chain: out.chain.map((c) => new X509Certificate(c)), roots });
    const device = await connectDevice({
      dir,
      gateway: { host: '127.0.0.1', port: this.port },
      clock: this.#o.clock,
      random: this.#o.random,
      logger: nullLogger,
      renewTimeoutMs: 10 * 60_000,
      retryMs: 60_000,
      mqtt: { keepalive: 60 },
      // Sockets and reconnects run in real time here (see the header); full jitter up to 1 s.
      reconnect: { initialMs: 100, factor: 2, capMs: 1_000 },
      reconnectClock: this.#o.realClock,
    });
    device.on('rotated', () => this.deviceRotations++);
    device.on('rotationFailed', (err: Error & { code?: string }) =>
      this.deviceRotationFailures.push(`${id}: ${err.code ?? err.name}: ${err.message}`),
    );
    return device;
  }

  async #provisionCollector(): Promise<Device> {
    const collector = await this.#provision(COLLECTOR);
    const subscribe = (): void => {
      collector.client.subscribe('devices/+/telemetry', { qos: 1 }, (err, granted) => {
        // An empty grant: mqtt.js had already resubscribed this filter on reconnect.
        if (!err && (granted ?? []).every((g) => g.qos === 1) && this.collector === collector)
          this.collectorSince ??= this.#step;
      });
    };
    collector.client.on('connect', subscribe);
    collector.client.on('close', () => {
      if (this.collector === collector) this.collectorSince = undefined;
    });
    collector.client.on('message', (topic, payload) => {
      const m = TELEMETRY.exec(topic);
      if (m !== null) this.ledger.received(m[1] as string, Number(payload.toString()));
    });
    subscribe();
    return collector;
  }

  /** Every publisher sends `count` QoS 1 messages; the PUBACKs are booked as they come. */
  burst(step: number, count: number): void {
    this.#step = step;
    for (const d of this.publishers) {
      for (let i = 0; i < count; i++) {
        const seq = this.ledger.sent(d.deviceId);
        d.client.publish(`devices/${d.deviceId}/telemetry`, String(seq), { qos: 1 }, (err) => {
          if (err) this.ledger.abandoned(d.deviceId, seq);
          else
            this.ledger.acked(
              d.deviceId,
              seq,
              this.#step,
              `broker incarnation ${this.brokerStarts}${this.broker === undefined ? ' (being killed)' : ''}, collector ${this.collectorSince === undefined ? 'not subscribed' : 'subscribed'}`,
            );
        });
      }
    }
  }

  /** Nothing left to wait for in real time (or nothing can move: no broker). */
  quiet(): boolean {
    if (this.broker === undefined || this.collector === undefined) return true;
    return (
      this.ledger.inFlight === 0 &&
      this.ledger.outstanding === 0 &&
      this.collectorSince !== undefined &&
      this.publishers.every((d) => d.client.connected)
    );
  }

  /** Changes whenever real-time work made progress (acknowledgements, deliveries, connections). */
  progress(): number {
    const s = this.ledger.stats;
    const up =
      this.publishers.filter((d) => d.client.connected).length + (this.collectorSince === undefined ? 0 : 1);
    return s.acked + s.received + s.duplicates + up * 1e9 + this.ledger.inFlight * 1e6;
  }

  /** Publishers connected now (a device whose SVID expired while cut off stays out: re-enrollment). */
  get connected(): number {
    return this.publishers.filter((d) => d.client.connected).length;
  }

  /** The process died: the broker goes away at once, mid-traffic. */
  kill(): void {
    const b = this.broker;
    this.broker = undefined;
    this.collectorSince = undefined;
    void b?.close();
  }

  /** Graceful shutdown of the broker (the agent is stopped by the gateway). */
  async stop(): Promise<void> {
    const b = this.broker;
    this.broker = undefined;
    this.collectorSince = undefined;
    await b?.close();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#enrolling?.catch(() => {});
    const clients = [...this.publishers, ...(this.collector === undefined ? [] : [this.collector])];
    // A client with unacknowledged messages waits for the broker on a polite end: bounded.
    await Promise.race([
      Promise.all(clients.map((d) => d.close().catch(() => {}))),
      sleep(this.#o.realClock, 2_000),
    ]);
    for (const d of clients) d.client.end(true);
    await this.stop();
  }
}
