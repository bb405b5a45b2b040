/**
 * A real TCP proxy on loopback for network faults between one gateway's upstream client and the
 * issuer's HTTPS listener. Modes, switchable at any time (they apply to new connections and, for
 * `blackhole` and `delay`, to bytes still moving on open ones):
 * - `pass`: bytes flow both ways;
 * - `refuse`: every new connection is reset at once (what a client sees of a closed port or a
 *   firewall REJECT), open ones are cut;
 * - `blackhole`: connections are accepted and nothing comes back, ever (a firewall DROP after the
 *   handshake, a dead route): only the client's own timeout ends the wait;
 * - `delay`: every chunk, either way, is held for `ms` on the injected clock (virtual time in the
 *   fleet), then passed on in order.
 * `progress` counts bytes moved, so a caller can tell real I/O still under way from a wait that
 * only time can end.
 *
 * @example
 * ```ts
 * const proxy = await TcpProxy.start(() => issuerAddress, clock);
 * proxy.mode = { kind: 'blackhole' };
 * await proxy.close();
 * ```
 */

import type { AddressInfo } from 'node:net';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Clock } from '../../runtime/core/clock.ts';

export type ProxyMode =
  | { kind: 'pass' }
  | { kind: 'refuse' }
  | { kind: 'blackhole' }
  | { kind: 'delay'; ms: number };

export class TcpProxy {
  mode: ProxyMode = { kind: 'pass' };
  /** Bytes moved either way, and connections accepted (for "is real I/O still moving"). */
  progress = 0;
  connections = 0;
  readonly port: number;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  private constructor(server: Server) {
    this.#server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Listen on 127.0.0.1 (port 0) and forward to `target()` (read at each connection). */
  static async start(
    target: () => { host: string; port: number } | undefined,
    clock: Clock,
  ): Promise<TcpProxy> {
    const holder: { proxy?: TcpProxy } = {};
    const server = createServer((client) => (holder.proxy as TcpProxy).#accept(client, target, clock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    holder.proxy = new TcpProxy(server);
    return holder.proxy;
  }

  /** Set the mode; `refuse` also cuts the connections that are open. */
  set(mode: ProxyMode): void {
    this.mode = mode;
    if (mode.kind === 'refuse') for (const s of this.#sockets) s.resetAndDestroy();
  }

  #accept(client: Socket, target: () => { host: string; port: number } | undefined, clock: Clock): void {
    this.connections++;
    this.progress++;
    this.#track(client);
    const to = target();
    if (this.mode.kind === 'refuse' || to === undefined) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(to.port, to.host);
    this.#track(upstream);
    const pipe = (from: Socket, into: Socket): void => {
      // Chunks held by a delay; the end and the close of `from` wait behind them, in order.
      let held = 0;
      let after: (() => void) | undefined;
      const release = (): void => {
        if (held === 0 && after !== undefined) {
          const f = after;
          after = undefined;
          f();
        }
      };
      from.on('data', (chunk: Buffer) => {
        const m = this.mode;
        if (m.kind === 'blackhole') return;
        if (m.kind === 'refuse') {
          from.resetAndDestroy();
          return;
        }
        if (m.kind === 'delay') {
          held++;
          from.pause();
          clock.setTimer('proxy-delay', m.ms, () => {
            held--;
            if (!into.destroyed) {
              into.write(chunk);
              this.progress += chunk.length;
            }
            from.resume();
            release();
          });
          return;
        }
        into.write(chunk);
        this.progress += chunk.length;
      });
      from.on('end', () => {
        if (this.mode.kind === 'blackhole') return;
        after = () => into.end();
        release();
      });
      from.on('close', () => {
        const prev = after;
        after = () => {
          prev?.();
          into.destroy();
        };
        release();
      });
    };
    pipe(client, upstream);
    pipe(upstream, client);
  }

  #track(s: Socket): void {
    this.#sockets.add(s);
    s.on('error', () => s.destroy());
    s.on('close', () => this.#sockets.delete(s));
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}
