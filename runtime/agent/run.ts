/**
 * The agent's composition root (with `runtime/cli/commands/agent.ts` and `runtime/cli/dev-plan.ts`): the only place
 * that builds the real clock, randomness, pino logger, files and sockets and wires the seams —
 * attestor, data-key protector, LevelDB store, HTTPS upstream, broker and admin endpoint.
 *
 * Order: store → agent (serves the cache at once) → admin socket → broker as soon as a valid SVID
 * exists (at once from the cache, or after the first attestation) → banner. Runs until `stop`.
 * Heavy modules (the broker, `level`) are imported lazily.
 *
 * @example
 * ```ts
 * const running = await runAgent(plan, { logger, out: io.out });
 * await running.stopped; // after running.stop()
 * ```
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Attestor } from '../../attestors/attestor.ts';
import type { BufferDb } from '../../transport/bridge/buffer.ts';
import type { FactoryOptions } from '../../transport/enroll/factory.ts';
import type { BrokerLimits } from '../../transport/mqtt/limits.ts';
import type { JournalDb } from '../../transport/mqtt/persistence/journal.ts';
import { SealedJournalDb } from '../../transport/mqtt/persistence/sealed-db.ts';
import {
  type BridgeCounters,
  type BrokerCounters,
  type JournalCounters,
  renderMetrics,
} from '../admin/metrics.ts';
import { type BrokerState, statusReport } from '../admin/report.ts';
import { startAdmin } from '../admin/server.ts';
import { type Clock, systemClock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import { cryptoRandom, type Random } from '../core/random.ts';
import type { DataKeyProtector } from '../store/protector.ts';
import { type LevelDb, SealedStore } from '../store/sealed-store.ts';
import type { Upstream } from '../upstream/types.ts';
import type { WorkloadPlan } from '../workload/run.ts';
import { Agent, type AgentOptions } from './agent.ts';
import { newP256Key } from './keys.ts';
import { serverIdentityOf } from './server-identity.ts';

export interface AgentPlan {
  readonly trustDomain: string;
  readonly dataDir: string;
  readonly attestor: Attestor;
  /** Built once the attestor has started (the TPM seals with it). */
  readonly protector: (attestor: Attestor) => Promise<DataKeyProtector>;
  readonly upstream: Upstream;
  readonly agent?: Partial<AgentOptions>;
  readonly broker?: {
    readonly listen: { host: string; port: number };
    readonly enrollment: { host: string; port: number };
    readonly policyFile?: string;
    /** DNS names / IP addresses the broker is reached at; default localhost, 127.0.0.1, ::1 and the listen host. */
    readonly serverNames?: readonly string[];
    readonly limits?: BrokerLimits;
    /** Forward local topics upstream; the offline buffer is a sublevel (`bridge`) of the store. */
    readonly bridge?: BrokerBridgePlan;
    /** Enrollment by factory certificate on the enrollment listener. */
    readonly factory?: BrokerFactoryPlan;
  };
  readonly admin?: { readonly socket?: string; readonly metricsPort?: number };
  /** The SPIFFE Workload API (issue 18): absent = not served. */
  readonly workload?: WorkloadPlan;
  /** Extra things to close at shutdown (the dev issuer). */
  readonly onStop?: () => Promise<void>;
}

export interface BrokerBridgePlan {
  readonly upstream: { host: string; port: number; ca: string; servername?: string };
  readonly topics: readonly { local: string; remotePrefix?: string }[];
  readonly maxMessages: number;
  readonly maxBytes: number;
  readonly reconnectMs: number;
}

export type BrokerFactoryPlan = FactoryOptions;

export interface RunningAgent {
  readonly agent: Agent;
  readonly store: SealedStore;
  readonly adminSocket: string;
  readonly metricsPort: number | undefined;
  /** The broker's addresses once it runs. */
  listeners(): { name: string; address: string }[];
  stop(): Promise<void>;
}

export async function runAgent(
  plan: AgentPlan,
  deps: { logger: Logger; clock?: Clock; random?: Random; out?: (line: string) => void },
): Promise<RunningAgent> {
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? cryptoRandom;
  const { logger } = deps;
  await mkdir(plan.dataDir, { recursive: true, mode: 0o700 });
  const closers: (() => Promise<void>)[] = [];
  const stop = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse())
      await c().catch((e) => logger.error('shutdown', { err: String(e) }));
  };
  if (plan.onStop) closers.push(plan.onStop);
  try {
    // A policy file that does not load stops the agent here, with every problem and its line:
    // never an agent that runs without its broker (issue 15, item 7).
    if (plan.broker?.policyFile !== undefined) {
      const { loadPolicyFile } = await import('../../transport/policy/load.ts');
      await loadPolicyFile(plan.broker.policyFile);
    }
    await plan.attestor.start();
    closers.push(() => plan.attestor.close());
    const protector = await plan.protector(plan.attestor);
    const { Level } = await import('level');
    const db = new Level<string, Uint8Array>(join(plan.dataDir, 'store'), {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    }) as unknown as LevelDb;
    const store = await SealedStore.open({ db, protector, random, logger, resetOnKeyFailure: true });
    closers.push(() => store.close());
    closers.push(() => plan.upstream.close());
    const agent = new Agent({
      trustDomain: plan.trustDomain,
      store,
      attestor: plan.attestor,
      upstream: plan.upstream,
      clock,
      random,
      logger,
      newKey: newP256Key,
      serverNames: brokerServerNames(plan.broker),
      ...plan.agent,
    });
    await agent.start();
    closers.push(() => agent.stop());
    // The listeners' certificate, minted under the delegated CA: local service lasts as long as the CA.
    const serverIdentity = serverIdentityOf(agent, { clock, logger });
    await serverIdentity.start();
    closers.push(async () => serverIdentity.stop());

    const listeners: { name: string; address: string }[] = [];
    /** What `edgeward status` says of the broker: its true state, and why it failed. */
    let brokerState: BrokerState = plan.broker === undefined ? { state: 'none' } : { state: 'starting' };
    let brokerRef:
      | {
          bridgeStats(): BridgeCounters | undefined;
          persistenceStats(): JournalCounters | undefined;
          refusals(): BrokerCounters['refusals'];
          retainedStats(): BrokerCounters['retained'];
        }
      | undefined;
    const tokenDb = store.sublevel('device-tokens', 'utf8');
    const { LevelTokenStore } = await import('../../transport/enroll/token-store.ts');
    const tokenStore = new LevelTokenStore(tokenDb as never);
    // The Workload API: served from the agent's identity (its delegated CA signs workload SVIDs).
    let workloadSocket: string | undefined;
    if (plan.workload !== undefined) {
      // A Workload API that cannot start (no koffi native module in this build, a bad entries
      // file) is logged and leaves the agent, its broker and its devices running.
      try {
        const { startWorkloadApi } = await import('../workload/run.ts');
        const w = await startWorkloadApi({
          plan: plan.workload,
          agent,
          trustDomain: plan.trustDomain,
          clock,
          random,
          logger,
        });
        closers.push(() => w.close());
        workloadSocket = w.socket;
      } catch (err) {
        logger.error('workload API failed to start', {
          event: 'workload.failed',
          code: (err as { code?: string }).code ?? 'unknown',
          message: (err as Error).message,
        });
      }
    }
    const socketPath = plan.admin?.socket ?? join(plan.dataDir, 'admin.sock');
    // Read before the admin socket listens: `/v1/status` may be asked at once (issue 15, item 9).
    let lastStats = await store.stats();
    const admin = await startAdmin({
      socketPath,
      logger,
      ...(plan.admin?.metricsPort !== undefined
        ? { metrics: { host: '127.0.0.1', port: plan.admin.metricsPort } }
        : {}),
      handlers: {
        status: () =>
          statusReport(agent.status(), {
            listeners,
            store: lastStats,
            bridge: brokerRef?.bridgeStats(),
            local: serverIdentity.status(),
            broker: brokerState,
            workloadApi: workloadSocket === undefined ? undefined : { socket: workloadSocket },
          }),
        metrics: () =>
          renderMetrics(
            agent.status(),
            agent.counters,
            brokerRef?.bridgeStats(),
            brokerRef?.persistenceStats(),
            serverIdentity.status(),
            brokerRef === undefined
              ? undefined
              : { refusals: brokerRef.refusals(), retained: brokerRef.retainedStats() },
          ),
        createDeviceToken: async (req) => {
          const { issueJoinToken } = await import('../../transport/enroll/join-token.ts');
          const { assertNotRevoked } = await import('../../transport/enroll/revoked.ts');
          // A token that could never be used is not issued: a revoked device id is refused here.
          assertNotRevoked(agent.revocations, agent.deviceSigner.gatewayId, req.id);
          return issueJoinToken({
            store: tokenStore,
            random,
            clock,
            bundle: agent.bundleSource.getBundleFor(plan.trustDomain),
            deviceId: req.id,
            ttlMs: req.ttlMs,
          });
        },
      },
    });
    closers.push(() => admin.close());
    const statsTimer = setInterval(() => {
      store.stats().then(
        (s) => {
          lastStats = s;
        },
        () => {},
      );
    }, 30_000);
    statsTimer.unref();
    closers.push(async () => clearInterval(statsTimer));

    // The broker presents the local server identity: start it as soon as there is one (a valid
    // delegated CA; the upstream SVID may have expired).
    let brokerStarting: Promise<void> | undefined;
    const startBrokerOnce = (): void => {
      if (plan.broker === undefined || brokerStarting !== undefined || !serverIdentity.status().up) return;
      const b = plan.broker;
      brokerStarting = (async () => {
        const { startBroker } = await import('../../transport/mqtt/broker.ts');
        const { refusingRevoked } = await import('../../transport/enroll/revoked.ts');
        const broker = await startBroker({
          serverSource: serverIdentity,
          svidSource: agent.svidSource,
          bundleSource: agent.bundleSource,
          revocationSource: agent.revocations,
          // A revoked device id is never enrolled (or renewed) again.
          deviceSigner: refusingRevoked(agent.deviceSigner, agent.revocations),
          tokenStore,
          trustDomain: plan.trustDomain,
          clock,
          logger,
          listen: b.listen,
          enrollment: b.enrollment,
          // Persistent MQTT sessions survive a restart: their journal is a sublevel of the store.
          // Its values sealed under the store's data key like every other value (sealed-db.ts).
          persistence: {
            db: new SealedJournalDb(
              store.sublevel('mqtt', 'view') as unknown as JournalDb,
              store.valueSealer('mqtt/'),
            ),
          },
          ...(b.policyFile !== undefined ? { policy: { file: b.policyFile } } : {}),
          ...(b.limits !== undefined ? { limits: b.limits } : {}),
          ...(b.factory !== undefined ? { factory: b.factory } : {}),
          ...(b.bridge !== undefined
            ? {
                bridge: {
                  // The client id when the upstream SVID has expired at start (it then waits for one).
                  ...(serverIdentity.status().up ? { gatewayId: serverIdentity.getX509Svid().spiffeId } : {}),
                  upstream: b.bridge.upstream,
                  topics: b.bridge.topics,
                  reconnectMs: b.bridge.reconnectMs,
                  buffer: {
                    db: store.sublevel('bridge', 'view') as unknown as BufferDb,
                    maxMessages: b.bridge.maxMessages,
                    maxBytes: b.bridge.maxBytes,
                  },
                },
              }
            : {}),
        });
        closers.push(() => broker.close());
        brokerRef = broker;
        brokerState = { state: 'serving' };
        const fmt = (e: { host: string; port: number }) =>
          `${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
        listeners.push({ name: 'mqtt', address: fmt(broker.addresses.mqtt) });
        if (broker.addresses.enrollment)
          listeners.push({ name: 'enrollment', address: fmt(broker.addresses.enrollment) });
        banner(agent, listeners, socketPath, deps.out);
      })().catch((err: unknown) => {
        const code = (err as { code?: string }).code ?? 'ERR_UNKNOWN';
        brokerState = { state: 'failed', error: { code, message: (err as Error).message } };
        logger.error('broker failed to start', {
          event: 'broker.failed',
          code,
          reason: (err as Error).message,
        });
        brokerStarting = undefined;
      });
    };
    serverIdentity.onChange(startBrokerOnce);
    agent.svidSource.onChange(() => {
      store.stats().then(
        (s) => {
          lastStats = s;
        },
        () => {},
      );
    });
    startBrokerOnce();
    if (plan.broker === undefined) {
      const off = agent.svidSource.onChange(() => {
        if (agent.svidSource.current()) {
          off();
          banner(agent, listeners, socketPath, deps.out);
        }
      });
    }
    return {
      agent,
      store,
      adminSocket: socketPath,
      metricsPort: admin.metricsPort,
      listeners: () => [...listeners],
      async stop() {
        await brokerStarting;
        await stop();
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** What `npm start` prints once the gateway has an identity and the broker listens. */
function banner(
  agent: Agent,
  listeners: { name: string; address: string }[],
  socketPath: string,
  out: ((line: string) => void) | undefined,
): void {
  if (out === undefined) return;
  const s = agent.status();
  const enroll = listeners.find((l) => l.name === 'enrollment')?.address;
  const lines = [
    '',
    `edgeward agent: ${s.spiffeId}`,
    `  SVID expires           ${s.svid ? new Date(s.svid.notAfter).toISOString() : '-'}`,
    `  delegated CA expires   ${s.deviceCa ? new Date(s.deviceCa.notAfter).toISOString() : '-'}`,
    ...listeners.map((l) => `  broker ${l.name.padEnd(16)}${l.address}`),
    `  admin socket           ${socketPath}`,
    '',
    'Enroll a device:',
    '  npx edgeward device token create --id sensor-1 --ttl 10m',
    `  npx edgeward device enroll --gateway ${enroll ?? '127.0.0.1:8884'} --id sensor-1 --token <TOKEN> --out ./sensor-1`,
    'Then, for example:',
    `  mosquitto_pub -h ${(listeners.find((l) => l.name === 'mqtt')?.address ?? '127.0.0.1:8883').replace(/:(\d+)$/, ' -p $1')} --cafile ./sensor-1/bundle.pem --cert ./sensor-1/svid.pem --key ./sensor-1/key.pem -i sensor-1 -t devices/sensor-1/hello -m hi`,
    'Status: npx edgeward status',
    '',
  ];
  for (const l of lines) out(l);
}

/** The names a device may use to reach the broker, for the gateway SVID's DNS/IP SANs. */
export function brokerServerNames(broker: AgentPlan['broker']): string[] {
  if (broker === undefined) return [];
  const names = [...(broker.serverNames ?? ['localhost', '127.0.0.1', '::1'])];
  for (const host of [broker.listen.host, broker.enrollment.host]) {
    if (host !== '0.0.0.0' && host !== '::' && !names.includes(host)) names.push(host);
  }
  return names;
}
