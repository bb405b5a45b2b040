/**
 * One issuer replica for `bench/issuer-ha.bench.ts`, in its own process: `node --import tsx
 * bench/issuer-ha-server.ts '<json>'` with { dir (dev CA files, shared by replicas), store:
 * { leveldb: dir } | { postgres: url }, tpm: { roots, intermediates (PEM paths), pcrSelection },
 * manifest (signed envelope text), firmwareKey (PEM public key) }. The tpm method as a fleet runs
 * it: EK chains to the manufacturer roots, auto-registration, PCR values checked against the signed
 * firmware manifest (which this replica submits, so every replica has it). Prints one JSON line
 * { url } once it listens; runs until stdin closes or SIGTERM. With `profile` (a file path), the
 * lines `profile` and `stop` on stdin start and stop the V8 CPU profiler (node:inspector), so the
 * profile covers exactly the measured phase; `stop` writes it to that path. Without, they bound
 * the counting of store calls and PostgreSQL round trips; `stop` prints the counts as one line.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { systemClock } from '../runtime/core/clock.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { createDevIssuerFiles } from '../runtime/issuer/dev.ts';
import { startIssuer } from '../runtime/issuer/start.ts';
import { openLevelStore } from '../runtime/issuer/store.ts';
import { openPostgresStore } from '../runtime/issuer/store-postgres.ts';

const o = JSON.parse(process.argv[2] ?? '{}') as {
  dir: string;
  store: { leveldb?: string; postgres?: string };
  tpm: { roots: string[]; intermediates: string[]; pcrSelection: string };
  manifest: string;
  firmwareKey: string;
  poolSize?: number;
  profile?: string;
};
const dev = await createDevIssuerFiles(o.dir, {
  trustDomain: 'fleet.example',
  clock: systemClock,
  random: cryptoRandom,
});
const opened =
  o.store.postgres !== undefined
    ? await openPostgresStore({ url: o.store.postgres, poolSize: o.poolSize ?? 16 })
    : await openLevelStore(o.store.leveldb as string);
// Counted from `profile` to `stop`: store calls by kind, and statements sent to PostgreSQL (one
// `Client.query` is one round trip: multi-statement simple queries count once).
const counts: Record<string, number> = {};
let counting = false;
const count = (k: string) => {
  if (counting) counts[k] = (counts[k] ?? 0) + 1;
};
const store = new Proxy(opened, {
  get(target, prop, receiver) {
    const v = Reflect.get(target, prop, receiver);
    if (typeof v !== 'function') return v;
    return (...args: unknown[]) => {
      count(`store.${String(prop)}`);
      return (v as (...a: unknown[]) => unknown).apply(target, args);
    };
  },
});
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  count('pg round trips');
  return (query as (...a: unknown[]) => unknown).apply(this, args);
} as typeof query;
const pem = (p: string) => new X509Certificate(readFileSync(p));
const running = await startIssuer({
  trustDomain: 'fleet.example',
  store,
  closeStore: true,
  ca: dev.ca,
  tls: dev.tls,
  clock: systemClock,
  random: cryptoRandom,
  methods: {
    tpm: {
      manufacturerRoots: o.tpm.roots.map(pem),
      intermediates: o.tpm.intermediates.map(pem),
      pcrSelection: o.tpm.pcrSelection,
      autoRegister: true,
      pcrPolicy: 'manifests',
    },
  },
  firmwareKeys: [createPublicKey(o.firmwareKey)],
  rateLimit: { perAddress: 1e9, perGateway: 1e9, windowMs: 60_000 },
});
await running.issuer.addManifest({ manifest: o.manifest }, { address: 'operator' });
process.stdout.write(`${JSON.stringify({ url: running.url })}\n`);
const stop = async () => {
  await running.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.stdin.on('end', stop);
const inspector = new Session();
for await (const cmd of createInterface({ input: process.stdin })) {
  if (cmd === 'profile') {
    for (const k of Object.keys(counts)) delete counts[k];
    counting = true;
    if (o.profile === undefined) continue;
    inspector.connect();
    await inspector.post('Profiler.enable');
    await inspector.post('Profiler.start');
  } else if (cmd === 'stop') {
    counting = false;
    process.stdout.write(`${JSON.stringify(counts)}\n`);
    if (o.profile === undefined) continue;
    const { profile } = await inspector.post('Profiler.stop');
    writeFileSync(o.profile, JSON.stringify(profile));
    inspector.disconnect();
  }
}
