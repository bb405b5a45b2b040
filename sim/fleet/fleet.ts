/**
 * The fleet: one real issuer (runtime/issuer, on memory-level), N simulated gateways (each the
 * real agent with its own TypeScript TPM simulator, see gateway.ts) with M devices each, joined by
 * the fault-injecting network (link.ts), all on one virtual clock. `step()` moves time by one
 * step, lets the devices renew and be authorized, checks every invariant and records a timeline
 * sample; scenarios (scenarios.ts) drive faults between steps.
 *
 * PCR reference values: the issuer requires signed firmware manifests (`pcrPolicy: manifests`);
 * the fleet's vendor key signs the manifest of the simulators' boot state (PCRs 0–7 zero).
 *
 * @example
 * ```ts
 * const fleet = await Fleet.create({ gateways: 4, devices: 5, dir, seed: 'ci' });
 * await fleet.runFor(6 * HOUR);
 * fleet.invariants.results();
 * await fleet.close();
 * ```
 */
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_BREAKER } from '../../runtime/agent/breaker.ts';
import { DEFAULT_BACKOFF } from '../../runtime/agent/policy.ts';
import { type Clock, sleep } from '../../runtime/core/clock.ts';
import { signManifest } from '../../runtime/firmware/manifest.ts';
import type { CaKeyPair } from '../../runtime/issuer/ca.ts';
import { createDevIssuerFiles } from '../../runtime/issuer/dev.ts';
import { Issuer, type IssuerOptions } from '../../runtime/issuer/issuer.ts';
import { type IssuerStore, openMemoryStore } from '../../runtime/issuer/store.ts';
import { createRootCa } from '../../runtime/svid/authority.ts';
import { seededRandom } from '../random.ts';
import { DeviceGroup } from './devices.ts';
import { SimGateway } from './gateway.ts';
import { HttpsLink } from './https-link.ts';
import { Invariants } from './invariants.ts';
import { FleetNetwork } from './link.ts';
import { MqttGateway } from './mqtt-gateway.ts';
import { FleetClock, type WallTimeSink } from './wall-time.ts';

export const MIN = 60_000;
export const HOUR = 60 * MIN;
export const TRUST_DOMAIN = 'fleet.example';
export const PCR_SELECTION = 'sha256:0,1,2,3,4,5,6,7';

export interface FleetOptions {
  readonly gateways: number;
  readonly devices: number;
  readonly dir: string;
  readonly seed?: string;
  readonly svidTtlMs?: number;
  readonly deviceCaTtlMs?: number;
  /** Simulation step (default 1 min): invariants are checked after every step. */
  readonly stepMs?: number;
  readonly start?: number;
  /** Real brokers and device-SDK devices on loopback for the first `gateways` gateways. */
  readonly mqtt?: MqttFleetOptions;
  /**
   * gw-0 talks to the issuer's real HTTPS front through a real loopback TCP proxy (the partition
   * scenario drives it), with the real HTTPS client; see https-link.ts.
   */
  readonly proxy?: { readonly realClock: Clock; readonly wallTime: WallTimeSink };
}

export interface MqttFleetOptions {
  readonly gateways: number;
  /** Publishing devices per MQTT gateway (plus one collector). */
  readonly devices: number;
  /** Real time: the settle wait after each virtual step. */
  readonly realClock: Clock;
  /** Mirrors virtual time into the process wall clock (OpenSSL's certificate checks), see wall-time.ts. */
  readonly wallTime: WallTimeSink;
  /** QoS 1 messages per publishing device per step (default 2). */
  readonly perStep?: number;
  /** Longest real wait per step for acknowledgements and deliveries (default 300 ms). */
  readonly settleMs?: number;
}

/** One timeline sample. */
export interface Sample {
  readonly t: number;
  readonly scenario: string;
  readonly gatewaysServing: number;
  readonly gatewaysAlive: number;
  readonly devicesValid: number;
  readonly rotations: number;
  readonly issuerUp: boolean;
}

export class Fleet {
  readonly clock: FleetClock;
  readonly mqtt: MqttGateway[] = [];
  /** gw-0's real HTTPS link through the TCP proxy, when enabled. */
  link: HttpsLink | undefined;
  readonly #mqttOptions: MqttFleetOptions | undefined;
  #steps = 0;
  readonly network: FleetNetwork;
  readonly gateways: SimGateway[] = [];
  readonly groups: DeviceGroup[] = [];
  readonly invariants = new Invariants(TRUST_DOMAIN);
  readonly timeline: Sample[] = [];
  /** Virtual time per step; the multi-day scenarios lengthen it while they run. */
  stepMs: number;
  readonly vendorKey: KeyObject;
  readonly recoveryBoundMs: number;
  issuer!: Issuer;
  rotations = 0;
  readonly #issuerOptions: IssuerOptions;
  readonly #lastRotation = new Map<string, number>();

  private constructor(
    o: FleetOptions,
    clock: FleetClock,
    issuerOptions: IssuerOptions,
    vendorKey: KeyObject,
  ) {
    this.clock = clock;
    this.#mqttOptions = o.mqtt;
    this.stepMs = o.stepMs ?? MIN;
    this.#issuerOptions = issuerOptions;
    this.vendorKey = vendorKey;
    this.network = new FleetNetwork(() => this.issuer, clock);
    this.recoveryBoundMs = DEFAULT_BACKOFF.capMs + this.stepMs;
    void DEFAULT_BREAKER;
  }

  static async create(o: FleetOptions): Promise<Fleet> {
    if (!(o.gateways >= 1) || !(o.devices >= 0))
      throw new TypeError('a fleet needs gateways >= 1 and devices >= 0');
    const clock = new FleetClock(o.start ?? Date.UTC(2026, 0, 1), o.mqtt?.wallTime ?? o.proxy?.wallTime);
    const random = seededRandom(o.seed ?? 'fleet');
    mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    const network = { ref: undefined as Fleet | undefined };
    const gateways: SimGateway[] = [];
    for (let i = 0; i < o.gateways; i++) {
      const dir = join(o.dir, `gw-${i}`);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      gateways.push(
        await SimGateway.create({
          name: `gw-${i}`,
          dir,
          clock,
          network: {
            upstreamFor: (name: string, alive: () => boolean, gwClock?: Clock) =>
              (network.ref as Fleet).network.upstreamFor(name, alive, gwClock),
          } as FleetNetwork,
          trustDomain: TRUST_DOMAIN,
          random: seededRandom(`${o.seed ?? 'fleet'}/gw-${i}`),
        }),
      );
    }
    const manufacturer = gateways.map((g) => g.tpm.manufacturerCa());
    const dev = await createDevIssuerFiles(join(o.dir, 'issuer'), {
      trustDomain: TRUST_DOMAIN,
      clock,
      random,
    });
    const vendor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issuerOptions: IssuerOptions = {
      trustDomain: TRUST_DOMAIN,
      store: await openMemoryStore(),
      ca: dev.ca,
      clock,
      random,
      svidTtlMs: o.svidTtlMs ?? HOUR,
      offlineBudgetMs: o.deviceCaTtlMs ?? 24 * HOUR,
      methods: {
        tpm: {
          manufacturerRoots: manufacturer.map((m) => m.root),
          intermediates: manufacturer.map((m) => m.intermediate),
          pcrSelection: PCR_SELECTION,
          autoRegister: true,
          pcrPolicy: 'manifests',
        },
      },
      firmwareKeys: [vendor.publicKey],
      rateLimit: { perAddress: 1_000_000, perGateway: 1_000_000, windowMs: 60_000 },
    };
    const fleet = new Fleet(o, clock, issuerOptions, vendor.privateKey);
    network.ref = fleet;
    fleet.issuer = await Issuer.create(issuerOptions);
    if (o.proxy !== undefined) {
      const link = await HttpsLink.start({
        tls: dev.tls,
        caPem: new X509Certificate(dev.ca.certificate).toString(),
        clock,
        realClock: o.proxy.realClock,
        isDown: () => fleet.network.issuerDown,
      });
      await link.serve(fleet.issuer);
      fleet.network.attachLink('gw-0', link);
      fleet.link = link;
      clock.realIo = () => link.settle();
    }
    await fleet.addManifest('1.0.0', {}, vendor.privateKey);
    for (const gw of gateways) {
      fleet.gateways.push(gw);
      fleet.groups.push(new DeviceGroup(gw, o.devices));
      await gw.boot();
    }
    const m = o.mqtt;
    if (m !== undefined)
      for (const gw of gateways.slice(0, m.gateways)) {
        const mg = new MqttGateway(gw, {
          devices: m.devices,
          dir: join(o.dir, gw.name),
          clock,
          random: seededRandom(`${o.seed ?? 'fleet'}/${gw.name}/mqtt`),
          trustDomain: TRUST_DOMAIN,
          realClock: m.realClock,
        });
        gw.services = mg;
        fleet.mqtt.push(mg);
      }
    return fleet;
  }

  /** Sign and submit a firmware manifest; `pcrs` overrides PCRs of the zero boot state. */
  async addManifest(version: string, pcrs: Record<number, string>, key: KeyObject): Promise<void> {
    const values: Record<number, string> = {};
    for (let i = 0; i < 8; i++) values[i] = pcrs[i] ?? '00'.repeat(32);
    const text = signManifest({ version, bank: 'sha256', pcrs: values }, key, this.clock.now());
    await this.issuer.addManifest({ manifest: text }, { address: 'operator' });
  }

  /** Stop the issuer and start a new one on the same store, optionally with the prepared next CA. */
  async restartIssuer(nextCa?: CaKeyPair): Promise<void> {
    await this.issuer.close();
    const ca = nextCa ?? this.#issuerOptions.ca;
    this.issuer = await Issuer.create({ ...this.#issuerOptions, ca, store: this.#issuerOptions.store });
    await this.link?.serve(this.issuer);
  }

  /** A new CA key pair for the trust domain (for a CA rotation). */
  newCa(): CaKeyPair {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const now = this.clock.now();
    const der = createRootCa({
      trustDomain: TRUST_DOMAIN,
      privateKey: key,
      notBefore: now - MIN,
      notAfter: now + 365 * 24 * HOUR,
      random: seededRandom(`ca-${now}`),
    });
    return { certificate: der, privateKey: key };
  }

  get issuerStore(): IssuerStore {
    return this.#issuerOptions.store;
  }

  /** One step: time moves, devices renew and are authorized, every invariant is checked. */
  async step(): Promise<void> {
    const stepNo = ++this.#steps;
    // QoS 1 traffic is in flight while timers rotate SVIDs (gateway, device, CA).
    for (const m of this.mqtt) m.burst(stepNo, this.#mqttOptions?.perStep ?? 2);
    await this.clock.advance(this.stepMs);
    const now = this.clock.now();
    if (this.mqtt.length > 0) await this.#settleMqtt(stepNo, now);
    for (let i = 0; i < this.gateways.length; i++) {
      const gw = this.gateways[i] as SimGateway;
      await (this.groups[i] as DeviceGroup).step(this.invariants, now);
      this.invariants.checkGateway(gw, now);
      const at = gw.agent?.status().lastRotation?.at;
      if (at !== undefined && at !== this.#lastRotation.get(gw.name)) {
        if (this.#lastRotation.has(gw.name)) this.rotations++;
        this.#lastRotation.set(gw.name, at);
      }
    }
    this.timeline.push({
      t: now,
      scenario: this.invariants.scenario,
      gatewaysServing: this.gateways.filter((g) => g.agent?.status().serving === true).length,
      gatewaysAlive: this.gateways.filter((g) => g.alive).length,
      // Over MQTT (the SDK's devices on the real brokers) when there are any, not through the agent.
      devicesValid:
        this.mqtt.length > 0
          ? this.mqtt.reduce((n, m) => n + m.validOverMqtt(now), 0)
          : this.groups.reduce((n, g) => n + g.validCount(now), 0),
      rotations: this.rotations,
      issuerUp: !this.network.issuerDown,
    });
  }

  async runFor(ms: number, each?: () => Promise<void> | void): Promise<void> {
    const end = this.clock.now() + ms;
    while (this.clock.now() < end) {
      await this.step();
      await each?.();
    }
  }

  /**
   * Measure recovery after an outage ends now: every watched gateway whose upstream was failing
   * must be back to `ok` and serving within the bound. Runs the fleet until all recovered or the
   * bound (plus slack, to measure how late) has passed.
   */
  async awaitRecovery(watch: readonly SimGateway[], slackMs = 30 * MIN): Promise<number> {
    const from = this.clock.now();
    const pending = new Set(watch.filter((g) => g.agent?.status().upstream.state !== 'ok'));
    const took = new Map<SimGateway, number>();
    while (pending.size > 0 && this.clock.now() - from <= this.recoveryBoundMs + slackMs) {
      await this.step();
      for (const g of [...pending]) {
        const s = g.agent?.status();
        if (s?.upstream.state === 'ok' && s.serving) {
          pending.delete(g);
          took.set(g, this.clock.now() - from);
        }
      }
    }
    for (const g of pending) took.set(g, this.clock.now() - from);
    let worst = 0;
    for (const [g, ms] of took) {
      worst = Math.max(worst, ms);
      this.invariants.check(
        ms <= this.recoveryBoundMs && !pending.has(g),
        'recovery',
        g,
        this.clock.now(),
        () =>
          `${pending.has(g) ? 'not recovered after' : 'recovered only after'} ${Math.round(ms / 1000)} s (bound ${this.recoveryBoundMs / 1000} s)`,
      );
    }
    if (took.size > 0) this.invariants.recovery(worst);
    return worst;
  }

  /** Real time for the sockets: brokers up, acknowledgements and deliveries done (bounded). */
  async #settleMqtt(stepNo: number, now: number): Promise<void> {
    const o = this.#mqttOptions as MqttFleetOptions;
    for (const m of this.mqtt) await m.ensure(stepNo);
    await this.#waitQuiet(o.realClock, o.settleMs ?? 300, 25);
    for (const m of this.mqtt) {
      this.invariants.checkQos(m, stepNo, now);
      this.invariants.checkMqtt(m, now);
    }
  }

  /** The end of a run: a longer wait, then every acknowledged message must have arrived. */
  async drainMqtt(waitMs = 5_000): Promise<void> {
    const o = this.#mqttOptions;
    if (o === undefined) return;
    const stepNo = ++this.#steps;
    for (const m of this.mqtt) await m.ensure(stepNo);
    await this.#waitQuiet(o.realClock, waitMs, 1_000);
    for (const m of this.mqtt) {
      this.invariants.checkQos(m, stepNo, this.clock.now(), true);
      this.invariants.checkMqtt(m, this.clock.now());
      this.invariants.checkAcked(m, this.clock.now());
    }
  }

  /** Until every MQTT gateway is quiet, `capMs` passed, or nothing moved for `idleMs`. */
  async #waitQuiet(real: Clock, capMs: number, idleMs: number): Promise<void> {
    const end = real.monotonic() + capMs;
    const progress = (): number => this.mqtt.reduce((n, m) => n + m.progress(), 0);
    let last = progress();
    let since = real.monotonic();
    while (
      !this.mqtt.every((m) => m.quiet()) &&
      real.monotonic() < end &&
      real.monotonic() - since < idleMs
    ) {
      await sleep(real, 2);
      const p = progress();
      if (p !== last) {
        last = p;
        since = real.monotonic();
      }
    }
  }

  /** kill -9 of a gateway; an MQTT gateway dies with QoS 1 traffic in flight. */
  async kill(gw: SimGateway, random: { float(): number }): Promise<void> {
    const m = this.mqtt.find((x) => x.gw === gw);
    const o = this.#mqttOptions;
    if (m !== undefined && o !== undefined && m.broker !== undefined) {
      m.burst(this.#steps, o.perStep ?? 2);
      await sleep(o.realClock, Math.floor(random.float() * 4));
    }
    gw.kill();
  }

  async close(): Promise<void> {
    for (const m of this.mqtt) await m.close();
    for (const g of this.gateways) await g.close();
    await this.link?.close();
    await this.issuer.close();
    await this.issuerStore.close();
  }
}
