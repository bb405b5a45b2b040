/**
 * The Workload API server as its own process for the benches: the test PKI's gateway identity
 * and delegated CA, one entry for the uid running it. Prints `READY <socket>` and serves until
 * stdin closes; on a `gc` line it collects garbage (with --expose-gc) and answers
 * `MEM <rss bytes> <open streams>`.
 * - `bench/workload.bench.ts` runs it bundled, without tsx, so its RSS is its own.
 * - `bench/jwt.bench.ts` runs it with `--jwt`: a JWT half whose upstream (`fetchJwtSvid`, the
 *   issuer call in a real agent) signs a real ES256 JWT-SVID in this process and counts the calls,
 *   so the bench can check that its samples were answered from the cache; on a `count` line it
 *   answers `UPSTREAM <calls>`.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { liveIdentity } from '../runtime/agent/identity.ts';
import { systemClock } from '../runtime/core/clock.ts';
import { nullLogger } from '../runtime/core/logger.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { softwareCaKey } from '../runtime/svid/ca-key.ts';
import { jwkThumbprint, publicJwk, signJwtSvid } from '../runtime/svid/jwt-svid.ts';
import { WorkloadApiServer } from '../runtime/workload/server.ts';
import type { WorkloadHost } from '../runtime/workload/svids.ts';
import { buildPki } from '../test/helpers/pki.ts';

const pki = await buildPki();
const der = (k: import('node:crypto').KeyObject): Uint8Array => k.export({ type: 'pkcs8', format: 'der' });
const live = liveIdentity({
  spiffeId: pki.gateway.id,
  svidChain: pki.gateway.chain.map((c) => c.raw),
  svidKey: der(pki.gateway.key),
  caChain: [pki.deviceCa.cert.raw],
  caKeyBackend: 'software',
  caKey: der(pki.deviceCa.key),
  obtainedAt: Date.now(),
  via: 'attest',
  nextNonce: new Uint8Array(32),
});

let upstreamCalls = 0;
function jwtHost(): Pick<WorkloadHost, 'jwtKeys' | 'fetchJwtSvid'> {
  const jwtKey = softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
  const kid = jwkThumbprint(jwtKey.publicKey);
  return {
    jwtKeys: () => [{ kid, jwk: publicJwk(jwtKey.publicKey) }],
    async fetchJwtSvid(spiffeId, audience) {
      upstreamCalls++;
      const iat = Math.floor(Date.now() / 1000);
      const exp = iat + 300;
      const token = await signJwtSvid(jwtKey, kid, { sub: spiffeId, aud: audience, iat, exp });
      return { token, expiresAt: exp * 1000 };
    },
  };
}

const socket = join(mkdtempSync(join(tmpdir(), 'edgeward-wl-bench-')), 'workload.sock');
const server = new WorkloadApiServer({
  socketPath: socket,
  entries: [{ name: 'bench', selectors: [`unix:uid:${process.getuid?.() ?? 0}`] }],
  clock: systemClock,
  logger: nullLogger,
  // The bench opens its 100 streams from one uid; the per-uid cap (64) would refuse the rest.
  maxConnectionsPerUid: 256,
  host: {
    trustDomain: pki.trustDomain,
    random: cryptoRandom,
    caIdentity: () => live,
    bundle: () => pki.bundle,
    clockTrusted: () => true,
    now: () => Date.now(),
    onChange: () => () => {},
    ...(process.argv.includes('--jwt') ? jwtHost() : {}),
  },
});
await server.start();
console.log(`READY ${socket}`);
const gc = (globalThis as { gc?: () => void }).gc;
let pending = '';
process.stdin.on('data', (d: Buffer) => {
  pending += d.toString();
  for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
    const cmd = pending.slice(0, nl).trim();
    pending = pending.slice(nl + 1);
    if (cmd === 'count') console.log(`UPSTREAM ${upstreamCalls}`);
    if (cmd !== 'gc') continue;
    gc?.();
    gc?.();
    console.log(`MEM ${process.memoryUsage.rss()} ${server.streamCount}`);
  }
});
process.stdin.on('end', () => void server.close().then(() => process.exit(0)));
