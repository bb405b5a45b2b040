/**
 * Store migrations across edgeward versions, both ways: the new version upgrades the store on
 * its first start; after a rollback the previous version opens the store again, because rollback
 * restores the snapshot taken at post-install (the schema record and the identity records).
 * Also guards the raw layout the snapshot relies on (`meta/data-key`, `meta/schema`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLevel } from 'memory-level';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { resealDataKey, restoreSnapshot, snapshotStore } from '../../firmware-hooks/store-snapshot.ts';
import { MemoryLogger } from '../../runtime/core/logger.ts';
import { keyFileProtector } from '../../runtime/store/key-file.ts';
import type { StoreMigration } from '../../runtime/store/migrations.ts';
import type { DataKeyProtector } from '../../runtime/store/protector.ts';
import { type LevelDb, SealedStore } from '../../runtime/store/sealed-store.ts';
import { seededRandom } from '../../sim/random.ts';
import { rejects } from '../helpers/rejects.ts';

const random = seededRandom('migration');
const logger = new MemoryLogger();
let dir: string;
let protector: DataKeyProtector;

/** Version 2 of a future edgeward: gateway records gain a `layout` field. */
const V2: StoreMigration[] = [
  {
    from: 1,
    async up(ctx) {
      const g = await ctx.get<Record<string, unknown>>('gateway');
      if (g !== undefined) ctx.queue({ type: 'put', name: 'gateway', value: { ...g, layout: 2 } });
    },
  },
];

const newDb = (): LevelDb =>
  new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }) as unknown as LevelDb;
const open = (db: LevelDb, version: number, p = protector) =>
  SealedStore.open({ db, protector: p, random, logger, schemaVersion: version, migrations: V2 });

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'edgeward-migrate-'));
  protector = await keyFileProtector(join(dir, 'kek'), random, logger);
});

test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('upgrade on first start of the new version, rollback lets the previous version read again', async () => {
  const db = newDb();
  const v1 = await open(db, 1);
  await v1.batch([
    { type: 'put', name: 'gateway', value: { spiffeId: 'spiffe://fleet.example/gateway/gw-1' } },
    { type: 'put', name: 'device/d1', value: { deviceId: 'd1' } },
  ]);
  await snapshotStore(db); // post-install, under the old version

  const v2 = await open(db, 2); // first start of the new version
  assert.equal(await v2.get('gateway'), { spiffeId: 'spiffe://fleet.example/gateway/gw-1', layout: 2 });
  await rejects(() => open(db, 1), 'ERR_STORE_SCHEMA'); // why rollback must restore

  await restoreSnapshot(db); // rollback
  const back = await open(db, 1);
  assert.equal(await back.get('gateway'), { spiffeId: 'spiffe://fleet.example/gateway/gw-1' });
  assert.equal(await back.get('device/d1'), { deviceId: 'd1' }, 'records outside the snapshot stay readable');
  assert.is(back.dropped, 0);

  const again = await open(db, 2); // the update retried later upgrades again
  assert.equal(await again.get('gateway'), { spiffeId: 'spiffe://fleet.example/gateway/gw-1', layout: 2 });
});

test('re-seal keeps the data key: values open under the new protector, and under the old after restore', async () => {
  const db = newDb();
  const s = await open(db, 1);
  await s.batch([{ type: 'put', name: 'gateway', value: { n: 1 } }]);
  await snapshotStore(db);
  const other = await keyFileProtector(join(dir, 'kek-next'), random, logger);
  await resealDataKey(db, protector, other);
  assert.equal(await (await open(db, 1, other)).get('gateway'), { n: 1 });
  await rejects(() => open(db, 1, protector), 'ERR_STORE_KEY');
  await restoreSnapshot(db);
  assert.equal(await (await open(db, 1, protector)).get('gateway'), { n: 1 });
  await rejects(() => restoreSnapshot(db), 'ERR_HOOK_NO_SNAPSHOT');
  await rejects(() => resealDataKey(db, other, protector), 'ERR_HOOK_RESEAL');
});

test.run();
