/**
 * TEST ONLY: a rig for CA rotation with real parts on one virtual clock: issuer replicas served
 * over HTTPS (`startIssuer`, each on its own store connection), real `Agent`s attesting with join
 * tokens and renewing through them, every upstream call counted so the clock moves one due timer
 * at a time and waits until the calls it started have all been answered (`step`), and every SVID an agent
 * was served recorded with the time (`served`).
 *
 * @example
 * ```ts
 * const rig = await rotationRig({ trustDomain: TD, clock });
 * const a = await rig.replica(storeA, { nextCa });
 * const agent = await rig.agent(a.issuer, [a.url]);
 * await rig.step(15_000);
 * ```
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JoinTokenAttestor } from '../../../attestors/join-token/attestor.ts';
import type { Agent, AgentOptions } from '../../../runtime/agent/agent.ts';
import type { LogFields, Logger } from '../../../runtime/core/logger.ts';
import type { CaKeyPair } from '../../../runtime/issuer/ca.ts';
import { createDevIssuerFiles, type DevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import type { Issuer } from '../../../runtime/issuer/issuer.ts';
import { type RunningIssuer, type StartIssuerOptions, startIssuer } from '../../../runtime/issuer/start.ts';
import type { IssuerStore } from '../../../runtime/issuer/store.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { httpsUpstream } from '../../../runtime/upstream/client.ts';
import type { Upstream } from '../../../runtime/upstream/types.ts';
import type { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { type Harness, harness } from '../agent/helpers/harness.ts';

export const MIN = 60_000;

/** A logger that keeps what it was told, with the virtual time it was told at. */
export class TimedLog implements Logger {
  readonly lines: { at: number; level: string; msg: string; fields: LogFields }[] = [];
  readonly #now: () => number;
  constructor(now: () => number) {
    this.#now = now;
  }
  #push(level: string, msg: string, fields: LogFields = {}): void {
    this.lines.push({ at: this.#now(), level, msg, fields });
  }
  debug = (m: string, f?: LogFields) => this.#push('debug', m, f);
  info = (m: string, f?: LogFields) => this.#push('info', m, f);
  warn = (m: string, f?: LogFields) => this.#push('warn', m, f);
  error = (m: string, f?: LogFields) => this.#push('error', m, f);
}

export interface RigAgent {
  readonly name: string;
  readonly agent: Agent;
  readonly h: Harness;
  /** Every SVID leaf the agent was served, with the time. */
  readonly served: { at: number; leaf: X509Certificate }[];
}

export interface RotationRig {
  readonly dir: string;
  readonly dev: DevIssuerFiles;
  readonly agents: RigAgent[];
  /** A new CA key pair (a generation of its own). */
  newCa(generation: number): CaKeyPair;
  replica(
    store: IssuerStore,
    extra?: Partial<StartIssuerOptions>,
  ): Promise<RunningIssuer & { log: TimedLog }>;
  /** An agent enrolled with a join token from `issuer`, talking to `urls` (failing over in order). */
  agent(issuer: Issuer, urls: string[], extra?: Partial<AgentOptions>): Promise<RigAgent>;
  /** Advance the clock by `ms`, then wait until every upstream call it started was answered. */
  step(ms: number): Promise<void>;
  close(): Promise<void>;
}

const RELAXED = { perAddress: 1_000_000, perGateway: 1_000_000, windowMs: 60_000 };

export async function rotationRig(o: { trustDomain: string; clock: VirtualClock }): Promise<RotationRig> {
  const { clock, trustDomain } = o;
  const dir = mkdtempSync(join(tmpdir(), 'ca-rotation-'));
  const dev = await createDevIssuerFiles(join(dir, 'dev'), {
    trustDomain,
    clock,
    random: seededRandom('rotation-dev'),
  });
  const replicas: RunningIssuer[] = [];
  const agents: RigAgent[] = [];
  const upstreams: Upstream[] = [];
  let inFlight = 0;
  const idle: (() => void)[] = [];
  const counted = <T>(p: Promise<T>): Promise<T> => {
    inFlight++;
    return p.finally(() => {
      inFlight--;
      if (inFlight === 0) for (const f of idle.splice(0)) f();
    });
  };
  /** Idle across a few turns of the event loop (a timer's work may start a call a turn later). */
  const settle = async (): Promise<void> => {
    const deadline = Date.now() + 30_000;
    for (let quiet = 0; quiet < 5; ) {
      if (Date.now() > deadline) throw new Error(`upstream calls still in flight after 30 s: ${inFlight}`);
      if (inFlight > 0) {
        quiet = 0;
        await new Promise<void>((r) => idle.push(r));
      } else {
        quiet++;
        await new Promise((r) => setImmediate(r));
      }
    }
  };
  return {
    dir,
    dev,
    agents,
    newCa(generation) {
      const privateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      const certificate = createRootCa({
        trustDomain,
        privateKey,
        notBefore: clock.now() - MIN,
        notAfter: clock.now() + 400 * 1440 * MIN,
        random: seededRandom(`rotation-ca-${generation}`),
        generation,
      });
      return { certificate, privateKey };
    },
    async replica(store, extra = {}) {
      const log = new TimedLog(() => clock.now());
      const r = await startIssuer({
        trustDomain,
        store,
        ca: dev.ca,
        tls: dev.tls,
        clock,
        random: seededRandom(`rotation-replica-${replicas.length}`),
        logger: log,
        methods: { joinToken: { enabled: true } },
        rateLimit: RELAXED,
        svidTtlMs: 10 * MIN,
        offlineBudgetMs: 60 * MIN,
        pruneIntervalMs: 7 * 1440 * MIN,
        ...extra,
      });
      replicas.push(r);
      return Object.assign(r, { log });
    },
    async agent(issuer, urls, extra = {}) {
      const name = `gw-${agents.length + 1}`;
      const tokenFile = join(dir, `${name}.token`);
      writeFileSync(tokenFile, await issuer.createJoinToken(name, 10 * MIN), { mode: 0o600 });
      const attestor = new JoinTokenAttestor({ tokenFile });
      await attestor.start();
      const h = await harness({}, { startAgent: false, seed: name });
      const up = httpsUpstream({
        endpoints: urls,
        ca: [new X509Certificate(dev.ca.certificate).toString()],
        clock,
      });
      upstreams.push(up);
      const upstream: Upstream = {
        endpoints: up.endpoints.map((ep) => ({
          url: ep.url,
          post: (p, b, c) => counted(ep.post(p, b, c)),
          get: (p, c) => counted(ep.get(p, c)),
        })),
        close: () => up.close(),
      };
      const agent = await h.restart({ clock, trustDomain, attestor, upstream, ...extra });
      const served: RigAgent['served'] = [];
      agent.svidSource.onChange(() => {
        const live = agent.svidSource.current();
        if (live !== undefined) served.push({ at: clock.now(), leaf: live.svid.chain[0] as X509Certificate });
      });
      const a = { name, agent, h, served };
      agents.push(a);
      return a;
    },
    async step(ms) {
      // Timer by timer, each one's calls answered before time moves on (the clients' timeouts
      // run on this clock too: a call must not time out while the clock runs ahead of the network).
      const target = clock.now() + ms;
      for (;;) {
        const due = clock.pendingTimers()[0]?.due;
        if (due === undefined || due > target) break;
        await clock.advance(Math.max(0, due - clock.now()));
        await settle();
      }
      await clock.advance(target - clock.now());
      await settle();
    },
    async close() {
      for (const a of agents) await a.agent.stop();
      for (const u of upstreams) await u.close();
      for (const r of replicas) await r.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
