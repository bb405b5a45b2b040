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
 * Lock-outs are not repaired: a device whose SVID expired while it could not reach the gateway
 * reports `ERR_DEVICE_SVID_EXPIRED` (the SDK's `lockedOut`) and stays out, as a real one would
 * until a person re-enrolls it; `lockouts` records each with the gateway's budget end (the
 * delegated CA's NotAfter) at that moment, for the invariant that none happens within the budget.
 * The broker presents the gateway's local server identity (runtime/agent/server-identity.ts, as
 * runtime/agent/run.ts does), so local service lasts as long as the delegated CA.
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
import type { Agent } from '../../runtime/agent/agent.ts';
import { type ServerIdentity, serverIdentityOf } from '../../runtime/agent/server-identity.ts';
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
  /** Devices that re-enrolled by themselves (the SDK's `reenrolled`: a factory certificate). */
  reenrolled = 0;
  /** Devices locked out (SVID expired, no way to re-enroll): when, and the gateway's budget end then. */
  readonly lockouts: { device: string; at: number; budgetEnd: number | undefined }[] = [];
  /** Device SVID rotations over MQTT that completed, and that failed (each retried by the SDK). */
  deviceRotations = 0;
  deviceRotationFailures: string[] = [];
  listenRetries = 0;
  readonly #o: MqttGatewayOptions;
  #step = 0;
  #enrolling: Promise<void> | undefined;
  #closed = false;
  /** The local server identity of the current agent incarnation. */
  #server: { agent: Agent; identity: ServerIdentity } | undefined;

  constructor(gw: SimGateway, o: MqttGatewayOptions) {
    this.gw = gw;
    this.#o = o;
  }

  /** Start the broker when the agent serves and none runs; enroll the devices the first time. */
  async ensure(step: number): Promise<void> {
    this.#step = step;
    const agent = this.gw.agent;
    if (this.#closed || agent === undefined) return;
    if (this.#server?.agent !== agent) {
      this.#server?.identity.stop();
      const identity = serverIdentityOf(agent, { clock: this.gw.clock, logger: nullLogger });
      this.#server = { agent, identity };
      // Resolves once the first certificate is minted (the delegated CA key may be in the TPM).
      await identity.start();
    }
    const server = this.#server.identity;
    if (this.broker === undefined && server.status().up) {
      try {
        this.broker = await startBroker({
          serverSource: server,
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
    if (this.collector === undefined && this.broker !== undefined) {
      this.#enrolling ??= this.#enroll().finally(() => {
        this.#enrolling = undefined;
      });
      await this.#enrolling;
    }
  }

  /** The gateway's budget end now: the delegated CA's NotAfter (undefined: no identity loaded). */
  budgetEnd(): number | undefined {
    return this.gw.agent?.svidSource.loaded()?.ca.notAfter;
  }

  /** Every device of this gateway (the publishers and the collector). */
  get devices(): Device[] {
    return [...this.publishers, ...(this.collector === undefined ? [] : [this.collector])];
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
    device.on('reenrolled', () => this.reenrolled++);
    device.on('lockedOut', () => {
      const budgetEnd = this.budgetEnd();
      const at = this.#o.clock.now();
      this.lockouts.push({ device: id, at, budgetEnd });
      // Ended for good at the budget's end: what it had published is owed no PUBACK any more.
      if (budgetEnd !== undefined && at >= budgetEnd) this.ledger.exempt(id);
    });
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
        const seq = this.ledger.sent(d.deviceId, d.client.connected);
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

  /** Devices connected over MQTT now with an SVID valid at `trueNow` (checked over MQTT, not through the agent). */
  validOverMqtt(trueNow: number): number {
    return this.devices.filter((d) => d.client.connected && d.notAfter > trueNow).length;
  }

  /** Publishers connected now (a device whose SVID expired while cut off stays out: locked out). */
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
    this.#server?.identity.stop();
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
