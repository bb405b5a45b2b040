/**
 * Running the issuer in-process: `startIssuer` builds the issuer on the given store, clock,
 * randomness and logger and serves it over HTTPS (127.0.0.1, port 0 by default); with `admin`
 * also the live operator API (`admin.ts`: a 0600 Unix socket, optionally an mTLS port), with
 * `health` the probes and metrics (`health.ts`, `metrics.ts`). `drain()` (the daemon's SIGTERM)
 * stops accepting, answers requests on old connections 503 ERR_ISSUER_DRAINING, waits for the
 * in-flight ones (at most `drainTimeoutMs`), then closes everything and the store. The agent's
 * `--dev` mode and the tests use it; the daemon (`edgeward issuer`) does the same from a config.
 *
 * @example
 * ```ts
 * const dev = await createDevIssuerFiles(dir, { trustDomain, clock, random });
 * const running = await startIssuer({ ...dev.material, store, clock, random, trustDomain, methods });
 * running.url; running.caCertificate; await running.close();
 * ```
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Clock } from '../core/clock.ts';
import { nullLogger } from '../core/logger.ts';
import { type AdminServer, startAdminSocket, startAdminTls } from './admin.ts';
import { type HealthServer, startHealthServer } from './health.ts';
import { createIssuerServer, type TlsMaterial } from './http.ts';
import { Issuer, type IssuerOptions } from './issuer.ts';
import type { ListenerLimits } from './listener-guard.ts';
import { IssuerMetrics } from './metrics.ts';
import type { RevocationFeedState } from './revocations.ts';

export interface StartIssuerOptions extends IssuerOptions {
  readonly tls: TlsMaterial;
  readonly host?: string;
  readonly port?: number;
  /** Close the store when the issuer closes (default true). */
  readonly closeStore?: boolean;
  /** The live operator API: a 0600 Unix socket at `socket`, and optionally an mTLS port. */
  readonly admin?: {
    readonly socket?: string;
    readonly listen?: { readonly host: string; readonly port: number };
  };
  /** Probes and metrics on plain HTTP (the daemon's default 127.0.0.1:9101). */
  readonly health?: { readonly host: string; readonly port: number };
  /** The gateway front's attacker bounds (defaults `DEFAULT_LISTENER_LIMITS`; config `listen.*`). */
  readonly listenerLimits?: Partial<ListenerLimits>;
  /** The admin mTLS port's bounds (default 10 s handshake, 10 s request, 64 connections). */
  readonly adminLimits?: Partial<ListenerLimits>;
  /** The clock of the listeners' timers (default the system clock: network time is real time). */
  readonly networkClock?: Clock;
  /** How long a drain waits for in-flight requests (default 10 s). */
  readonly drainTimeoutMs?: number;
  /** Metrics sources a store adds (pg-store: its pool; revocation feed lag). */
  readonly metricsSources?: readonly (() => string)[];
}

export interface RunningIssuer {
  /** `https://127.0.0.1:<port>` */
  readonly url: string;
  /** The active CA certificate (DER): the trust root of the bundle. */
  readonly caCertificate: Buffer;
  readonly issuer: Issuer;
  /** Admin socket path and mTLS `host:port`, health URL, when started. */
  readonly adminSocket?: string;
  readonly adminTls?: string;
  readonly healthUrl?: string;
  /** Requests being served now. */
  inFlight(): number;
  /** Stop accepting, finish what is in flight (bounded), close. */
  drain(): Promise<{ unfinished: number }>;
  /**
   * Cut every connection and stop listening at once, in-flight requests unanswered: a crash as
   * clients see it (tests). `keepListening`: only the connections are cut, as when a load
   * balancer's next connection reaches another replica.
   */
  abort(o?: { keepListening?: boolean }): void;
  close(): Promise<void>;
}

/** The revocation feed against the store, or undefined when the store does not answer within 2 s. */
async function feedState(issuer: Issuer): Promise<RevocationFeedState | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), 2000);
  });
  try {
    return await Promise.race([issuer.revocationFeedState().catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

export async function startIssuer(o: StartIssuerOptions): Promise<RunningIssuer> {
  const logger = o.logger ?? nullLogger;
  const metrics = new IssuerMetrics();
  for (const s of o.metricsSources ?? []) metrics.addSource(s);
  const issuer = await Issuer.create({
    ...o,
    observe: (e) => {
      metrics.observe(e);
      o.observe?.(e);
    },
  }).catch(async (err: unknown) => {
    // An issuer refused at start (an unusable CA, ...) leaves its store closed like a stopped one.
    if (o.closeStore !== false) await o.store.close().catch(() => undefined);
    throw err;
  });
  let inFlight = 0;
  let draining = false;
  let idle: (() => void) | undefined;
  const net = o.networkClock === undefined ? {} : { clock: o.networkClock };
  const server = createIssuerServer(
    issuer,
    o.tls,
    logger,
    {
      draining: () => draining,
      count: (d) => {
        inFlight += d;
        if (inFlight === 0) idle?.();
      },
    },
    { ...(o.listenerLimits === undefined ? {} : { limits: o.listenerLimits }), ...net },
  );
  const host = o.host ?? '127.0.0.1';
  server.listen(o.port ?? 0, host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const started: (AdminServer | HealthServer)[] = [];
  const readiness = async () => (draining ? ['draining: shutting down'] : issuer.readiness());
  try {
    if (o.admin?.socket !== undefined)
      started.push(await startAdminSocket(issuer, { path: o.admin.socket, logger }));
    if (o.admin?.listen !== undefined)
      started.push(
        await startAdminTls(issuer, {
          ...o.admin.listen,
          tls: o.tls,
          logger,
          ...net,
          ...(o.adminLimits === undefined ? {} : { limits: o.adminLimits }),
        }),
      );
    if (o.health !== undefined)
      started.push(
        await startHealthServer(
          {
            readiness,
            metrics: async () => {
              const [ready, feed] = await Promise.all([readiness(), feedState(issuer)]);
              const refreshed = issuer.revocationsRefreshedAt;
              const pool = o.store.poolStats?.();
              const jwtKeys = issuer.jwtKeyStatus();
              return metrics.render({
                caNotAfterMs: issuer.caNotAfter,
                revocationSequence: feed?.applied ?? issuer.revocationSequence,
                inFlight,
                ready: ready.length === 0,
                ...(feed === undefined ? {} : { revocationStoreSequence: feed.newest }),
                ...(refreshed === undefined ? {} : { revocationsRefreshedAtMs: refreshed }),
                ...(pool === undefined ? {} : { pool }),
                ...(jwtKeys === undefined ? {} : { jwtKeys }),
              });
            },
          },
          { ...o.health, logger },
        ),
      );
  } catch (err) {
    for (const s of started) await s.close();
    server.close();
    await issuer.close();
    throw err;
  }
  const [adminSocket, adminTls, health] = [
    o.admin?.socket === undefined ? undefined : started[0],
    o.admin?.listen === undefined ? undefined : started[o.admin?.socket === undefined ? 0 : 1],
    o.health === undefined ? undefined : started[started.length - 1],
  ];
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      draining = true;
      await issuer.close();
      for (const s of started) await s.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      if (o.closeStore !== false) await o.store.close();
    })();
    return closing;
  };
  return {
    url: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    caCertificate: issuer.caCertificate,
    issuer,
    ...(adminSocket === undefined ? {} : { adminSocket: (adminSocket as AdminServer).address }),
    ...(adminTls === undefined ? {} : { adminTls: (adminTls as AdminServer).address }),
    ...(health === undefined ? {} : { healthUrl: (health as HealthServer).url }),
    inFlight: () => inFlight,
    abort(a) {
      if (a?.keepListening !== true) {
        draining = true;
        server.close();
      }
      server.closeAllConnections();
    },
    async drain() {
      draining = true;
      server.close(); // stop accepting; callbacks when the last connection closed
      server.closeIdleConnections();
      if (inFlight > 0) {
        const done = new Promise<void>((resolve) => {
          idle = resolve;
        });
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, o.drainTimeoutMs ?? 10_000);
        });
        await Promise.race([done, timeout]);
        clearTimeout(timer);
      }
      const unfinished = inFlight;
      if (unfinished > 0)
        logger.warn('issuer drain: requests still in flight at the deadline', { unfinished });
      await close();
      return { unfinished };
    },
    close,
  };
}
