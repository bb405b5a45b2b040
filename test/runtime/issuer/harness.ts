/** Shared setup for issuer tests: a dev issuer on memory-level, and a CBOR-over-HTTPS client. */
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { createDevIssuerFiles, type DevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import type { IssuerOptions } from '../../../runtime/issuer/issuer.ts';
import { type RunningIssuer, type StartIssuerOptions, startIssuer } from '../../../runtime/issuer/start.ts';
import { type IssuerStore, issuerCbor, openMemoryStore } from '../../../runtime/issuer/store.ts';
import { createCsr } from '../../../runtime/svid/csr.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { testRandom } from '../../helpers/seed.ts';

export const TD = 'fleet.example';

export interface Harness {
  running: RunningIssuer;
  /** The issuer's store, to read records a test checks. */
  store: IssuerStore;
  clock: VirtualClock;
  logger: MemoryLogger;
  caPem: string;
  dir: string;
  call(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    opts?: { cert?: Uint8Array; key?: KeyObject; contentType?: string; raw?: Buffer },
  ): Promise<{ status: number; body: unknown; text: string; headers: Record<string, unknown> }>;
}

export async function harness(
  methods: IssuerOptions['methods'],
  extra: Partial<StartIssuerOptions> = {},
  /** Replicas of one issuer: the same dev CA and TLS files, one clock (and `extra.store` shared). */
  shared: { dev?: DevIssuerFiles; clock?: VirtualClock; seed?: string } = {},
): Promise<Harness> {
  const clock = shared.clock ?? new VirtualClock(Date.now());
  const random = testRandom(shared.seed ?? 'issuer-harness'); // replayable: EDGEWARD_TEST_SEED
  const dir = mkdtempSync(join(tmpdir(), 'issuer-'));
  const dev =
    shared.dev ?? (await createDevIssuerFiles(join(dir, 'dev'), { trustDomain: TD, clock, random }));
  const logger = new MemoryLogger();
  const store = extra.store ?? (await openMemoryStore());
  const running = await startIssuer({
    trustDomain: TD,
    store,
    ca: dev.ca,
    tls: dev.tls,
    clock,
    random,
    logger,
    methods,
    ...extra,
  });
  const caPem = new X509Certificate(dev.ca.certificate).toString();
  return {
    running,
    store,
    clock,
    logger,
    caPem,
    dir,
    call(method, path, body, opts = {}) {
      const payload =
        opts.raw ?? (body === undefined ? Buffer.alloc(0) : Buffer.from(issuerCbor.encode(body)));
      const u = new URL(path, running.url);
      return new Promise((resolve, reject) => {
        const req = request(
          {
            host: u.hostname,
            port: u.port,
            path: u.pathname + u.search,
            method,
            ca: caPem,
            agent: false,
            ...(opts.cert && opts.key
              ? {
                  cert: new X509Certificate(Buffer.from(opts.cert)).toString(),
                  key: opts.key.export({ format: 'pem', type: 'pkcs8' }),
                }
              : {}),
            headers: {
              'content-type': opts.contentType ?? 'application/cbor',
              'content-length': payload.length,
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const buf = Buffer.concat(chunks);
              const type = String(res.headers['content-type'] ?? '');
              resolve({
                status: res.statusCode ?? 0,
                body:
                  type.startsWith('application/cbor') && buf.length > 0 ? issuerCbor.decode(buf) : undefined,
                text: buf.toString('utf8'),
                headers: res.headers,
              });
            });
          },
        );
        req.on('error', reject);
        req.end(payload);
      });
    },
  };
}

export function keyAndCsr(): { key: KeyObject; csr: Buffer } {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return { key, csr: createCsr(key) };
}

export function errorCode(body: unknown): string | undefined {
  return (body as { error?: { code?: string } } | undefined)?.error?.code;
}
