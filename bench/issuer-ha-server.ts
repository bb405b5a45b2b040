/**
 * One issuer replica for `bench/issuer-ha.bench.ts`, in its own process: `node --import tsx
 * bench/issuer-ha-server.ts '<json>'` with { dir (dev CA files, shared by replicas), store:
 * { leveldb: dir } | { postgres: url }, tokens?: n }. Prints one JSON line { url, tokens? } once
 * it listens (tokens: join tokens for gw-0..n-1, created through this replica); runs until
 * stdin closes or SIGTERM.
 */
import { systemClock } from '../runtime/core/clock.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { createDevIssuerFiles } from '../runtime/issuer/dev.ts';
import { startIssuer } from '../runtime/issuer/start.ts';
import { openLevelStore } from '../runtime/issuer/store.ts';
import { openPostgresStore } from '../runtime/issuer/store-postgres.ts';

const o = JSON.parse(process.argv[2] ?? '{}') as {
  dir: string;
  store: { leveldb?: string; postgres?: string };
  tokens?: number;
};
const dev = await createDevIssuerFiles(o.dir, {
  trustDomain: 'fleet.example',
  clock: systemClock,
  random: cryptoRandom,
});
const store =
  o.store.postgres !== undefined
    ? await openPostgresStore({ url: o.store.postgres, poolSize: 16 })
    : await openLevelStore(o.store.leveldb as string);
const running = await startIssuer({
  trustDomain: 'fleet.example',
  store,
  closeStore: true,
  ca: dev.ca,
  tls: dev.tls,
  clock: systemClock,
  random: cryptoRandom,
  methods: { joinToken: { enabled: true } },
  rateLimit: { perAddress: 1e9, perGateway: 1e9, windowMs: 60_000 },
});
const tokens: string[] = [];
for (let i = 0; i < (o.tokens ?? 0); i++)
  tokens.push(await running.issuer.createJoinToken(`gw-${i}`, 3_600_000));
process.stdout.write(`${JSON.stringify({ url: running.url, tokens })}\n`);
const stop = async () => {
  await running.close();
  process.exit(0);
};
process.stdin.on('end', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
