/**
 * The real-socket link of one gateway to the issuer: the issuer's own HTTPS front
 * (runtime/issuer/http.ts) on loopback, a `TcpProxy` in front of it that the partition scenario
 * drives (refuse, black-hole, delay), and the gateway's real HTTPS + CBOR client
 * (runtime/upstream/client.ts) pointed at the proxy. While the issuer is down the proxy refuses.
 *
 * Virtual time and real I/O: the client's timeout runs on the gateway's virtual clock, so virtual
 * time must not run past a call that is still moving bytes. `settle()` waits (in real time) until
 * no call is in flight, or nothing moved for a few polls (a black hole, a delayed chunk: only
 * virtual time can end those); the fleet clock calls it before each timer (wall-time.ts).
 *
 * @example
 * ```ts
 * const link = await HttpsLink.start({ issuer: () => fleet.issuer, tls, caPem, clock, realClock });
 * const upstream = link.upstream(gatewayClock, alive);
 * link.proxy.set({ kind: 'blackhole' });
 * ```
 */
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { type Clock, sleep } from '../../runtime/core/clock.ts';
import { nullLogger } from '../../runtime/core/logger.ts';
import { createIssuerServer, type TlsMaterial } from '../../runtime/issuer/http.ts';
import type { Issuer } from '../../runtime/issuer/issuer.ts';
import { httpsUpstream } from '../../runtime/upstream/client.ts';
import type { Upstream, UpstreamEndpoint } from '../../runtime/upstream/types.ts';
import { TcpProxy } from './tcp-proxy.ts';

export interface HttpsLinkOptions {
  readonly tls: TlsMaterial;
  /** PEM of the CA that signed the issuer's TLS certificate. */
  readonly caPem: string;
  /** The fleet's clock (the proxy's delays). */
  readonly clock: Clock;
  readonly realClock: Clock;
  /** True while the issuer is down: the proxy refuses every connection then. */
  readonly isDown: () => boolean;
  /** The client's per-request timeout (virtual ms, default 10 s). */
  readonly timeoutMs?: number;
}

export class HttpsLink {
  readonly proxy: TcpProxy;
  /** Calls made, and failed, through this link. */
  calls = 0;
  failed = 0;
  readonly #o: HttpsLinkOptions;
  #server: Server | undefined;
  #issuer: Issuer | undefined;
  #port = 0;
  #inFlight = 0;

  private constructor(o: HttpsLinkOptions, proxy: TcpProxy) {
    this.#o = o;
    this.proxy = proxy;
  }

  static async start(o: HttpsLinkOptions): Promise<HttpsLink> {
    const ref: { link?: HttpsLink } = {};
    const proxy = await TcpProxy.start(() => ref.link?.target(), o.clock);
    ref.link = new HttpsLink(o, proxy);
    return ref.link;
  }

  /** Where the proxy forwards to: the HTTPS front of the issuer now serving (undefined: down). */
  target(): { host: string; port: number } | undefined {
    if (this.#server === undefined || this.#o.isDown()) return undefined;
    return { host: '127.0.0.1', port: this.#port };
  }

  /** Serve `issuer` over HTTPS (again, after an issuer restart); `undefined` takes the front down. */
  async serve(issuer: Issuer | undefined): Promise<void> {
    if (issuer === this.#issuer && this.#server !== undefined) return;
    const old = this.#server;
    this.#server = undefined;
    if (old !== undefined) {
      old.closeAllConnections();
      await new Promise<void>((r) => old.close(() => r()));
    }
    this.#issuer = issuer;
    if (issuer === undefined) return;
    const server = createIssuerServer(issuer, this.#o.tls, nullLogger);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  /** The real HTTPS client of one gateway incarnation, through the proxy. */
  upstream(clock: Clock, alive: () => boolean): Upstream {
    const real = httpsUpstream({
      endpoints: [`https://127.0.0.1:${this.proxy.port}`],
      ca: [this.#o.caPem],
      clock,
      timeoutMs: this.#o.timeoutMs ?? 10_000,
    });
    const ep = real.endpoints[0] as UpstreamEndpoint;
    const track = async <T>(fn: () => Promise<T>): Promise<T> => {
      if (!alive()) return new Promise<T>(() => {}); // a dead process never sees an answer
      this.calls++;
      this.#inFlight++;
      try {
        return await fn();
      } catch (err) {
        this.failed++;
        throw err;
      } finally {
        this.#inFlight--;
      }
    };
    const endpoint: UpstreamEndpoint = {
      url: ep.url,
      post: (path, body, opts) => track(() => ep.post(path, body, opts)),
      get: (path, opts) => track(() => ep.get(path, opts)),
    };
    return { endpoints: [endpoint], close: () => real.close() };
  }

  /** Real time until no call is in flight, or nothing moved for 8 polls, or 3 s passed. */
  async settle(): Promise<void> {
    if (this.#inFlight === 0) return;
    const real = this.#o.realClock;
    const end = real.monotonic() + 3_000;
    let last = this.proxy.progress;
    let still = 0;
    while (this.#inFlight > 0 && still < 8 && real.monotonic() < end) {
      await sleep(real, 2);
      if (this.proxy.progress === last) still++;
      else {
        still = 0;
        last = this.proxy.progress;
      }
    }
  }

  async close(): Promise<void> {
    await this.serve(undefined);
    await this.proxy.close();
  }
}
