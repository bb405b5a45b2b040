/**
 * Two issuers on one store, on a virtual clock, with join-token attestation and relaxed rate
 * limits: on LevelDB (two issuers on one store) and on PostgreSQL (two issuers, each its own
 * pool, on one throw-away database). For the idempotent-finish tests (attest, renew, recover);
 * `postgresPair` alone, with other rate limits, for the renewal-session tests.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { Issuer } from '../../../runtime/issuer/issuer.ts';
import type { IssuerStore } from '../../../runtime/issuer/store.ts';
import { openLevelStore } from '../../../runtime/issuer/store-level.ts';
import { migratePostgresStore, openPostgresStore } from '../../../runtime/issuer/store-postgres.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { testDatabase } from '../../helpers/postgres.ts';
import { testRandom } from '../../helpers/seed.ts';
import { TD } from './harness.ts';

const RELAXED = { perAddress: 1_000_000, perGateway: 1_000_000, windowMs: 60_000 };

export interface Rig {
  a: Issuer;
  b: Issuer;
  store: IssuerStore;
  clock: VirtualClock;
  close(): Promise<void>;
}

async function rig(label: string, stores: () => Promise<IssuerStore[]>, rateLimit = RELAXED): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'attest-idem-'));
  const clock = new VirtualClock(Date.now());
  const dev = await createDevIssuerFiles(join(dir, 'dev'), {
    trustDomain: TD,
    clock,
    random: testRandom(`${label}-dev`),
  });
  const [sa, sb] = await stores();
  const make = (store: IssuerStore, i: number) =>
    Issuer.create({
      trustDomain: TD,
      store,
      ca: dev.ca,
      clock,
      random: testRandom(`${label}-${i}`),
      methods: { joinToken: { enabled: true } },
      rateLimit,
      pruneIntervalMs: 7 * 86_400_000,
    });
  const a = await make(sa as IssuerStore, 0);
  const b = await make(sb as IssuerStore, 1);
  return {
    a,
    b,
    store: sa as IssuerStore,
    clock,
    async close() {
      await a.close();
      await b.close();
      await (sa as IssuerStore).close();
      if (sb !== sa) await (sb as IssuerStore).close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Two issuers on one throw-away PostgreSQL database (`label` names it), each its own pool. */
export function postgresPair(label: string, rateLimit = RELAXED): Promise<Rig> {
  return rig(
    `pg-${label}`,
    async () => {
      const db = await testDatabase(label);
      await migratePostgresStore({ url: db.url });
      return [
        await openPostgresStore({ url: db.url, poolSize: 4 }),
        await openPostgresStore({ url: db.url, poolSize: 4 }),
      ];
    },
    rateLimit,
  );
}

export const rigs: [string, () => Promise<Rig>][] = [
  [
    'LevelDB',
    () =>
      rig('level', async () => {
        const s = await openLevelStore(mkdtempSync(join(tmpdir(), 'attest-idem-store-')));
        return [s, s];
      }),
  ],
  ['PostgreSQL', () => postgresPair('attest-idem')],
];
