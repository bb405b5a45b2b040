/**
 * One simulated gateway: its own TypeScript TPM simulator state (sim/tpm), a sealed store on
 * memory-level that outlives its processes, and the real `Agent` (runtime/agent) attesting with
 * the real `TpmAttestor` through the fleet network. The gateway's clock is a view of the fleet's
 * virtual clock with an offset (a wrong RTC) and with an incarnation: when the process is killed
 * (`kill()`, kill -9) its timers stop firing, its upstream calls never answer and the hook that
 * marks rotation steps never returns — nothing it had not yet written reaches the store. `boot()`
 * starts the next incarnation on the same store and the same TPM.
 *
 * @example
 * ```ts
 * const gw = await SimGateway.create({ name: 'gw-1', dir, clock, network, trustDomain, random });
 * await gw.boot();
 * gw.kill(); await gw.boot();          // a power cut and a reboot
 * gw.setClockOffset(-clock.now());     // the RTC says 1970
 * ```
 */
import { join } from 'node:path';
import { MemoryLevel } from 'memory-level';
import { TpmAttestor } from '../../attestors/tpm/attestor.ts';
import { flush, listHandles } from '../../attestors/tpm/client/helpers.ts';
import { TPM_HT } from '../../attestors/tpm/wire/constants.ts';
import { Agent } from '../../runtime/agent/agent.ts';
import type { RotationStep } from '../../runtime/agent/exchange.ts';
import { newP256Key } from '../../runtime/agent/keys.ts';
import type { Clock, Timer } from '../../runtime/core/clock.ts';
import { nullLogger } from '../../runtime/core/logger.ts';
import type { Random } from '../../runtime/core/random.ts';
import { keyFileProtector } from '../../runtime/store/key-file.ts';
import { type LevelDb, SealedStore } from '../../runtime/store/sealed-store.ts';
import type { VirtualClock } from '../clock/virtual-clock.ts';
import { openSimTransport, type SimTpmTransport } from '../tpm/index.ts';
import type { FleetNetwork } from './link.ts';

/** A view of the fleet clock: an RTC offset, and timers that die with the incarnation. */
class GatewayClock implements Clock {
  offsetMs = 0;
  readonly #base: VirtualClock;
  readonly #alive: () => boolean;

  constructor(base: VirtualClock, alive: () => boolean) {
    this.#base = base;
    this.#alive = alive;
  }

  now(): number {
    return this.#base.now() + this.offsetMs;
  }

  monotonic(): number {
    return this.#base.monotonic();
  }

  setTimer(name: string, delayMs: number, fn: () => void): Timer {
    return this.#base.setTimer(name, delayMs, () => {
      if (this.#alive()) fn();
    });
  }
}

export interface SimGatewayOptions {
  readonly name: string;
  readonly dir: string;
  readonly clock: VirtualClock;
  readonly network: FleetNetwork;
  readonly trustDomain: string;
  readonly random: Random;
  /** Kill the next incarnation when its rotation reaches this step (kill -9 mid-rotation). */
  readonly onStep?: (gw: SimGateway, step: RotationStep) => void;
}

export class SimGateway {
  readonly name: string;
  readonly tpm: SimTpmTransport;
  readonly db: LevelDb;
  agent: Agent | undefined;
  incarnation = 0;
  /** When set, the next rotation step with this name kills the process. */
  killAtStep: RotationStep | undefined;
  kills = 0;
  /** NotAfter of the identity the process held when it was last killed (store-loads check). */
  lastKnownNotAfter: number | undefined;
  /** What else dies with the process (its broker), see mqtt-gateway.ts. */
  services: { kill(): void; stop(): Promise<void> } | undefined;
  readonly #o: SimGatewayOptions;
  readonly #offsets: { ms: number } = { ms: 0 };
  #clock: GatewayClock | undefined;

  private constructor(o: SimGatewayOptions, tpm: SimTpmTransport, db: LevelDb) {
    this.#o = o;
    this.name = o.name;
    this.tpm = tpm;
    this.db = db;
  }

  static async create(o: SimGatewayOptions): Promise<SimGateway> {
    const tpm = await openSimTransport(join(o.dir, 'tpm'), {
      clock: o.clock,
      random: o.random,
      ekTypes: ['ecc'],
      pcrBanks: ['sha256'],
    });
    const db = new MemoryLevel<string, Uint8Array>({
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    }) as unknown as LevelDb;
    return new SimGateway(o, tpm, db);
  }

  /** The gateway's wall clock (with its RTC offset). */
  now(): number {
    return this.#o.clock.now() + this.#offsets.ms;
  }

  setClockOffset(ms: number): void {
    this.#offsets.ms = ms;
    if (this.#clock !== undefined) this.#clock.offsetMs = ms;
  }

  get clockOffset(): number {
    return this.#offsets.ms;
  }

  /** The clock of the running incarnation (its timers die with it). */
  get clock(): Clock {
    if (this.#clock === undefined) throw new TypeError(`${this.name} has not booted`);
    return this.#clock;
  }

  get alive(): boolean {
    return this.agent !== undefined;
  }

  /** Start a new process: open the store (it must load), start the agent. */
  async boot(): Promise<void> {
    if (this.agent !== undefined) throw new TypeError(`${this.name} is already running`);
    await this.#released;
    const me = ++this.incarnation;
    const alive = (): boolean => this.incarnation === me && this.agent !== undefined;
    const clock = new GatewayClock(this.#o.clock, alive);
    clock.offsetMs = this.#offsets.ms;
    this.#clock = clock;
    const store = await SealedStore.open({
      db: this.db,
      protector: await keyFileProtector(join(this.#o.dir, 'store.key'), this.#o.random, nullLogger),
      random: this.#o.random,
      logger: nullLogger,
    });
    const attestor = new TpmAttestor({ transport: this.tpm, random: this.#o.random, ownsTransport: false });
    await attestor.start();
    const agent = new Agent({
      trustDomain: this.#o.trustDomain,
      store,
      attestor,
      upstream: this.#o.network.upstreamFor(this.name, alive, clock),
      clock,
      random: this.#o.random,
      logger: nullLogger,
      newKey: newP256Key,
      onStep: (step) => {
        if (!alive()) return new Promise<void>(() => {});
        this.#o.onStep?.(this, step);
        if (this.killAtStep === step) {
          this.killAtStep = undefined;
          this.kill();
          return new Promise<void>(() => {});
        }
        return undefined;
      },
    });
    this.agent = agent;
    await agent.start();
  }

  /** Remember the identity held now, to check the next boot serves it. */
  rememberIdentity(): void {
    this.lastKnownNotAfter = this.agent?.status().svid?.notAfter;
  }

  /**
   * kill -9: the process stops where it is; nothing more reaches the store. What it had loaded in
   * the TPM goes with it (also after a graceful stop, when the process exits), as the kernel's
   * resource manager (/dev/tpmrm0) flushes a finished process's transient objects and sessions;
   * without that, the simulator's three object slots fill up with the earlier incarnations' keys
   * (the delegated CA key is kept loaded while running).
   */
  kill(): void {
    if (this.agent === undefined) return;
    this.agent = undefined;
    this.kills++;
    this.services?.kill();
    this.#released = this.#flushTransient();
  }

  /** Resolves once the last killed incarnation's TPM objects are flushed. */
  #released: Promise<void> = Promise.resolve();

  async #flushTransient(): Promise<void> {
    for (const ht of [TPM_HT.TRANSIENT, TPM_HT.HMAC_SESSION, TPM_HT.POLICY_SESSION]) {
      const handles = await listHandles(this.tpm, (ht << 24) >>> 0).catch(() => [] as number[]);
      for (const h of handles) await flush(this.tpm, h);
    }
  }

  /** A graceful shutdown: the services stop first, then the agent. */
  async stop(): Promise<void> {
    const a = this.agent;
    if (a === undefined) return;
    await this.services?.stop();
    this.agent = undefined;
    await a.stop();
    // The process then exits: the resource manager releases whatever it left loaded in the TPM.
    this.#released = this.#flushTransient();
  }

  /** A TPM power cycle (PCRs cleared, resetCount + 1), as a reboot does. */
  async resetTpm(): Promise<void> {
    await this.tpm.reset();
  }

  async close(): Promise<void> {
    const a = this.agent;
    this.agent = undefined;
    await a?.stop();
    await this.tpm.close();
    await this.db.close();
  }
}
