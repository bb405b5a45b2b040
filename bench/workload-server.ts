/**
 * The Workload API server as its own process for `bench/workload.bench.ts` (so its RSS is its
 * own): the test PKI's gateway identity and delegated CA, one entry for the uid running it.
 * Prints `READY <socket>` and serves until stdin closes.
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
process.stdin.resume();
process.stdin.on('end', () => void server.close().then(() => process.exit(0)));
