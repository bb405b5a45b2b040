/**
 * Running the issuer in-process: `startIssuer` builds the issuer on the given store, clock,
 * randomness and logger and serves it over HTTPS (127.0.0.1, port 0 by default). The agent's
 * `--dev` mode and the tests use it; the daemon (`edgeward issuer`) does the same from a
 * config file.
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
import { nullLogger } from '../core/logger.ts';
import { createIssuerServer, type TlsMaterial } from './http.ts';
import { Issuer, type IssuerOptions } from './issuer.ts';

export interface StartIssuerOptions extends IssuerOptions {
  readonly tls: TlsMaterial;
  readonly host?: string;
  readonly port?: number;
  /** Close the store when the issuer closes (default true). */
  readonly closeStore?: boolean;
}

export interface RunningIssuer {
  /** `https://127.0.0.1:<port>` */
  readonly url: string;
  /** The active CA certificate (DER): the trust root of the bundle. */
  readonly caCertificate: Buffer;
  readonly issuer: Issuer;
  close(): Promise<void>;
}

export async function startIssuer(o: StartIssuerOptions): Promise<RunningIssuer> {
  const issuer = await Issuer.create(o);
  const server = createIssuerServer(issuer, o.tls, o.logger ?? nullLogger);
  const host = o.host ?? '127.0.0.1';
  server.listen(o.port ?? 0, host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    caCertificate: issuer.caCertificate,
    issuer,
    close() {
      closing ??= (async () => {
        await issuer.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        if (o.closeStore !== false) await o.store.close();
      })();
      return closing;
    },
  };
}
