/**
 * TEST ONLY: simulated gateways for the replica-kill storm (replica-kill-storm.test.ts). Each is
 * the real `Agent` with a join-token attestor, a memory-level store sealed with a key file, the
 * real HTTPS + CBOR client over every replica's URL (its own order, so each replica is the first
 * choice of a share of the fleet) and the real clock. Every upstream call goes through a
 * recorder (`CallLog`): which replica, which path, the session sent, the serial answered, or how
 * it failed, and the calls still in flight per replica, so the test can kill a replica while it
 * holds requests and account afterwards for every identity the store holds.
 *
 * @example
 * ```ts
 * const log = new CallLog();
 * const gw = await StormGateway.start({ name: 'gw-1', token, urls, caPem, dir, log, trustDomain });
 * await log.until(() => gw.renewals() >= 2, 'gw-1 renewed twice', 30_000);
 * ```
 */
import { EventEmitter } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryLevel } from 'memory-level';
import { JoinTokenAttestor } from '../../../attestors/join-token/attestor.ts';
import { Agent } from '../../../runtime/agent/agent.ts';
import { newP256Key } from '../../../runtime/agent/keys.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { isEdgewardError } from '../../../runtime/core/error.ts';
import { type LogFields, type Logger, nullLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { keyFileProtector } from '../../../runtime/store/key-file.ts';
import { type LevelDb, SealedStore } from '../../../runtime/store/sealed-store.ts';
import { parseCertificate } from '../../../runtime/svid/certificate.ts';
import { httpsUpstream } from '../../../runtime/upstream/client.ts';
import { upstreamReason } from '../../../runtime/upstream/failover.ts';
import { type IssuedIdentity, PATHS } from '../../../runtime/upstream/protocol.ts';
import type { CallOptions, Upstream, UpstreamEndpoint } from '../../../runtime/upstream/types.ts';

/** One upstream call as the gateway made it, and how it ended. */
export interface CallRecord {
  readonly gateway: string;
  readonly replica: number;
  readonly path: string;
  readonly body: unknown;
  readonly options: CallOptions | undefined;
  /** The session a finish call consumes. */
  readonly sessionId: string | undefined;
  readonly by: 'agent' | 'replay';
  state: 'in-flight' | 'ok' | 'failed';
  /** The SVID serial a finish call was answered with, and its NotAfter. */
  serial?: string;
  notAfter?: number;
  code?: string;
  reason?: string;
  remoteCode?: string;
  message?: string;
}

const FINISH = new Set<string>([PATHS.attestFinish, PATHS.renewFinish, PATHS.recoverFinish]);

/** Every call of the fleet, and a change event to wait on (no polling). */
export class CallLog {
  readonly calls: CallRecord[] = [];
  readonly #changed = new EventEmitter().setMaxListeners(0);

  inFlight(replica: number, path?: string): number {
    return this.calls.filter(
      (c) => c.state === 'in-flight' && c.replica === replica && (path === undefined || c.path === path),
    ).length;
  }

  changed(): void {
    this.#changed.emit('change');
  }

  /** Resolves once `pred()` holds (checked at every change); rejects after `ms` with `what`. */
  until(pred: () => boolean, what: string | (() => string), ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred()) return false;
        done();
        resolve();
        return true;
      };
      const done = () => {
        clearTimeout(timer);
        this.#changed.off('change', check);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`not within ${ms} ms: ${typeof what === 'string' ? what : what()}`));
      }, ms);
      this.#changed.on('change', check);
      check();
    });
  }

  /** `ep`, recording each call in this log as made to `replica` by `gateway`. */
  track(ep: UpstreamEndpoint, replica: number, gateway: string, by: CallRecord['by']): UpstreamEndpoint {
    const run = async <T>(
      path: string,
      body: unknown,
      options: CallOptions | undefined,
      fn: () => Promise<T>,
    ) => {
      const sessionId = FINISH.has(path) ? (body as { sessionId?: string }).sessionId : undefined;
      const rec: CallRecord = { gateway, replica, path, body, options, sessionId, by, state: 'in-flight' };
      this.calls.push(rec);
      this.changed();
      try {
        const out = await fn();
        rec.state = 'ok';
        if (FINISH.has(path)) {
          const leaf = (out as IssuedIdentity).svidChain[0] as Uint8Array;
          const cert = parseCertificate(leaf);
          rec.serial = cert.serialHex;
          rec.notAfter = cert.notAfter;
        }
        return out;
      } catch (err) {
        rec.state = 'failed';
        rec.code = isEdgewardError(err) ? err.code : String(err);
        rec.message = err instanceof Error ? err.message : String(err);
        const reason = upstreamReason(err);
        if (reason !== undefined) rec.reason = reason;
        const remote = (err as { fields?: { remoteCode?: unknown } }).fields?.remoteCode;
        if (typeof remote === 'string') rec.remoteCode = remote;
        throw err;
      } finally {
        this.changed();
      }
    };
    return {
      url: ep.url,
      post: (path, body, options) => run(path, body, options, () => ep.post(path, body, options)),
      get: (path, options) => run(path, undefined, options, () => ep.get(path, options)),
    };
  }
}

/** An agent event worth counting (rotations, failovers, failed attempts, refusals). */
export interface GatewayEvent {
  readonly event: string;
  readonly fields: LogFields;
}

const COUNTED = new Set([
  'identity.rotated',
  'upstream.failover',
  'identity.retry',
  'identity.refused',
  'identity.halted',
  'identity.none',
]);

export interface StormGatewayOptions {
  readonly name: string;
  readonly token: string;
  /** Every replica's URL; the gateway tries them from `first` on (its failover order). */
  readonly urls: readonly string[];
  readonly first: number;
  readonly caPem: string;
  readonly dir: string;
  readonly trustDomain: string;
  readonly log: CallLog;
}

export class StormGateway {
  readonly name: string;
  readonly events: GatewayEvent[] = [];
  agent!: Agent;

  private constructor(name: string) {
    this.name = name;
  }

  static async start(o: StormGatewayOptions): Promise<StormGateway> {
    const gw = new StormGateway(o.name);
    const tokenFile = join(o.dir, `${o.name}.token`);
    writeFileSync(tokenFile, o.token, { mode: 0o600 });
    const attestor = new JoinTokenAttestor({ tokenFile });
    await attestor.start();
    const db = new MemoryLevel<string, Uint8Array>({
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    }) as unknown as LevelDb;
    const store = await SealedStore.open({
      db,
      protector: await keyFileProtector(join(o.dir, `${o.name}.kek`), cryptoRandom, nullLogger),
      random: cryptoRandom,
      logger: nullLogger,
    });
    const order = o.urls.map((_, k) => (o.first + k) % o.urls.length);
    const real = httpsUpstream({
      endpoints: order.map((i) => o.urls[i] as string),
      ca: [o.caPem],
      clock: systemClock,
    });
    const upstream: Upstream = {
      endpoints: real.endpoints.map((ep, k) => o.log.track(ep, order[k] as number, o.name, 'agent')),
      close: () => real.close(),
    };
    const record = (fields: LogFields = {}) => {
      const event = fields.event;
      if (typeof event !== 'string' || !COUNTED.has(event)) return;
      gw.events.push({ event, fields });
      o.log.changed();
    };
    const logger: Logger = {
      debug: () => {},
      info: (_m, f) => record(f),
      warn: (_m, f) => record(f),
      error: (_m, f) => record(f),
    };
    gw.agent = new Agent({
      trustDomain: o.trustDomain,
      store,
      attestor,
      upstream,
      clock: systemClock,
      random: cryptoRandom,
      logger,
      newKey: newP256Key,
      // The first failed attempt would open it: a replica's death must never count as one.
      breaker: { failures: 1, openMs: 3_600_000 },
      // The feeds once at start, not again within the test (they are not under test here).
      feedIntervalMs: 3_600_000,
    });
    await gw.agent.start();
    return gw;
  }

  /** Rotations the agent committed, by way (`attest`, `renew`, `recover`). */
  rotations(via?: string): number {
    return this.events.filter(
      (e) => e.event === 'identity.rotated' && (via === undefined || e.fields.via === via),
    ).length;
  }

  count(event: string): number {
    return this.events.filter((e) => e.event === event).length;
  }

  /** Serial (lowercase hex) of the SVID served now. */
  servedSerial(): string {
    const leaf = this.agent.svidSource.getX509Svid().chain[0];
    if (leaf === undefined) throw new TypeError(`${this.name} serves no SVID`);
    return parseCertificate(leaf.raw).serialHex;
  }
}
