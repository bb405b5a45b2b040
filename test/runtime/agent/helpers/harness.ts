/**
 * TEST ONLY: builds an agent on a VirtualClock, a memory-level store sealed with a key file in a
 * temp dir, a FakeIssuer and the test attestor; `restart()` abandons the running agent (no stop:
 * as after a power cut) and starts a new one on the same store bytes.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLevel } from 'memory-level';
import { Agent, type AgentOptions } from '../../../../runtime/agent/agent.ts';
import { newP256Key } from '../../../../runtime/agent/keys.ts';
import { MemoryLogger } from '../../../../runtime/core/logger.ts';
import type { IssuerOptions } from '../../../../runtime/issuer/issuer.ts';
import { keyFileProtector } from '../../../../runtime/store/key-file.ts';
import { type LevelDb, SealedStore } from '../../../../runtime/store/sealed-store.ts';
import { VirtualClock } from '../../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../../sim/random.ts';
import { FakeIssuer } from './fake-issuer.ts';
import { type RealIssuer, realIssuer } from './real-issuer.ts';
import { TestTokenAttestor } from './test-attestor.ts';

export interface Harness {
  clock: VirtualClock;
  issuer: FakeIssuer;
  logger: MemoryLogger;
  db: LevelDb;
  agent: Agent;
  store: SealedStore;
  urls: string[];
  attestor: TestTokenAttestor;
  /** The real issuer behind the endpoints, when the harness was made with `real`. */
  real: RealIssuer | undefined;
  /**
   * Start a fresh agent on the same db (the previous one is abandoned or stopped by the caller).
   * Pass a new `clock` to leave an abandoned agent's timers behind on the old one.
   */
  restart(extra?: Partial<AgentOptions>): Promise<Agent>;
  openStore(): Promise<SealedStore>;
}

export async function harness(
  extra: Partial<AgentOptions> = {},
  /** `real`: the real issuer (in process, helpers/real-issuer.ts) answers behind the fake's endpoints. */
  o: {
    urls?: string[];
    seed?: string;
    startAgent?: boolean;
    real?: boolean;
    /** The real issuer's attestation methods (default: join tokens). */
    realMethods?: IssuerOptions['methods'];
    /** The real issuer's CA (default: a dev CA with a file key). */
    realCa?: IssuerOptions['ca'];
    /** Virtual time at start (default 2026-01-01). */
    start?: number;
  } = {},
): Promise<Harness> {
  const clock = new VirtualClock(o.start ?? Date.UTC(2026, 0, 1));
  const random = seededRandom(o.seed ?? 'agent');
  const logger = new MemoryLogger();
  const h = {} as Harness;
  h.clock = clock;
  const issuer = new FakeIssuer({ now: () => h.clock.now() }, random);
  const urls = o.urls ?? ['https://issuer-a.test'];
  let token: string | undefined;
  h.real = undefined;
  if (o.real === true) {
    h.real = await realIssuer(() => h.clock.now(), random, issuer.trustDomain, o.realMethods, o.realCa);
    issuer.backend = h.real.backend;
    token = await h.real.token();
  }
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-agent-'));
  const db = new MemoryLevel<string, Uint8Array>({
    keyEncoding: 'utf8',
    valueEncoding: 'view',
  }) as unknown as LevelDb;
  const openStore = async () =>
    SealedStore.open({
      db,
      protector: await keyFileProtector(join(dir, 'kek'), random, logger),
      random,
      logger,
    });
  Object.assign(h, { issuer, logger, db, urls, openStore });
  h.restart = async (more = {}) => {
    if (more.clock !== undefined) h.clock = more.clock as VirtualClock;
    h.store = await openStore();
    h.attestor = new TestTokenAttestor(token);
    await h.attestor.start();
    h.agent = new Agent({
      trustDomain: issuer.trustDomain,
      store: h.store,
      attestor: h.attestor,
      upstream: issuer.upstream(urls),
      clock: h.clock,
      random,
      logger,
      newKey: newP256Key,
      ...extra,
      ...more,
    });
    await h.agent.start();
    return h.agent;
  };
  if (o.startAgent !== false) await h.restart();
  return h;
}

export const MIN = 60_000;
export const HOUR = 60 * MIN;
