/**
 * The Workload API server as its own process for `bench/workload.bench.ts` (so its RSS is its
 * own; the bench runs it bundled, without tsx): the test PKI's gateway identity and delegated CA,
 * one entry for the uid running it. Prints `READY <socket>` and serves until stdin closes; on a
 * `gc` line it collects garbage (with --expose-gc) and answers `MEM <rss bytes> <open streams>`.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { liveIdentity } from '../runtime/agent/identity.ts';
import { systemClock } from '../runtime/core/clock.ts';
import { nullLogger } from '../runtime/core/logger.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { WorkloadApiServer } from '../runtime/workload/server.ts';
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
    if (cmd !== 'gc') continue;
    gc?.();
    gc?.();
    console.log(`MEM ${process.memoryUsage.rss()} ${server.streamCount}`);
  }
});
process.stdin.on('end', () => void server.close().then(() => process.exit(0)));
