/**
 * The sealed-store conformance suite (STYLE.md rule 9): the same tests run on every level backend.
 * `makeDb(name)` returns a db for `name`; calling it again with the same name reopens the same data.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { keyFileProtector } from '../../../runtime/store/key-file.ts';
import { STORE_SCHEMA_VERSION } from '../../../runtime/store/migrations.ts';
import { type LevelDb, SealedStore } from '../../../runtime/store/sealed-store.ts';
import { seededRandom } from '../../../sim/random.ts';
import { rejects } from '../../helpers/rejects.ts';

const RAW = { keyEncoding: 'utf8', valueEncoding: 'view' } as const;

export function storeSuite(backend: string, makeDb: (name: string) => LevelDb): void {
  const t = suite(`sealed store on ${backend}`);
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-store-'));
  let n = 0;
  const fresh = () => `db${n++}`;
  const random = seededRandom(`store-${backend}`);

  async function openStore(name: string, keyFile = 'kek', extra: { onDropped?: (n: string) => void } = {}) {
    const logger = new MemoryLogger();
    const protector = await keyFileProtector(join(dir, keyFile), random, logger);
    const db = makeDb(name);
    const store = await SealedStore.open({ db, protector, random, logger, ...extra });
    return { store, db, logger };
  }

  t.after(() => rmSync(dir, { recursive: true, force: true }));

  t('values round-trip through CBOR and AES-GCM, and survive a reopen', async () => {
    const name = fresh();
    const { store } = await openStore(name);
    assert.ok(store.fresh);
    const rec = { a: 1, bytes: new Uint8Array([1, 2, 3]), nested: { s: 'x' } };
    await store.batch([
      { type: 'put', name: 'gateway', value: rec },
      { type: 'put', name: 'device/a', value: { id: 'a' } },
      { type: 'put', name: 'device/b', value: { id: 'b' } },
      { type: 'put', name: 'devicez', value: 1 },
    ]);
    await store.close();
    const { store: again } = await openStore(name);
    assert.not.ok(again.fresh);
    const got = await again.get<typeof rec>('gateway');
    assert.is(got?.a, 1);
    assert.equal([...(got?.bytes ?? [])], [1, 2, 3]);
    const devices: string[] = [];
    for await (const [k] of again.entries('device/')) devices.push(k);
    assert.equal(devices, ['device/a', 'device/b']);
    assert.equal(await again.stats().then((s) => s.values), 4);
    await again.close();
  });

  t('a batch applies puts and deletes together', async () => {
    const { store } = await openStore(fresh());
    await store.batch([{ type: 'put', name: 'x', value: 1 }]);
    await store.batch([
      { type: 'del', name: 'x' },
      { type: 'put', name: 'y', value: 2 },
    ]);
    assert.is(await store.get('x'), undefined);
    assert.is(await store.get('y'), 2);
    await store.close();
  });

  t('no plaintext reaches the db', async () => {
    const name = fresh();
    const { store, db } = await openStore(name);
    const secret = Buffer.from('-----PRIVATE KEY MATERIAL 0123456789-----');
    await store.batch([
      { type: 'put', name: 'gateway', value: { svidKey: secret, spiffeId: 'spiffe://td/x' } },
    ]);
    for await (const [, v] of db.iterator(RAW)) {
      assert.is(Buffer.from(v).indexOf(secret), -1);
      assert.is(Buffer.from(v).indexOf(Buffer.from('spiffe://td/x')), -1);
    }
    await store.close();
  });

  t('tampering with any stored value is detected: dropped, reported, never served', async () => {
    const name = fresh();
    const dropped: string[] = [];
    const { store, db, logger } = await openStore(name, 'kek', { onDropped: (k) => dropped.push(k) });
    const names = ['gateway', 'bundle', 'revocations', 'floor', 'device/a'];
    await store.batch(names.map((k) => ({ type: 'put' as const, name: k, value: { k } })));
    for (const k of names) {
      const raw = Buffer.from((await db.get(k, RAW)) as Uint8Array);
      for (const at of [0, 5, raw.length - 1]) {
        const bad = Buffer.from(raw);
        bad[at] = (bad[at] as number) ^ 0x01;
        await db.put(k, bad, RAW);
        assert.is(await store.get(k), undefined, `${k} flipped at ${at}`);
        assert.is(await db.get(k, RAW), undefined, `${k} deleted`);
        await db.put(k, raw, RAW);
        assert.equal(await store.get(k), { k });
      }
    }
    assert.is(dropped.length, names.length * 3);
    assert.ok(logger.lines.some((l) => l.fields.code === 'ERR_STORE_CORRUPT'));
    // A valid value moved under another name fails too (the name is authenticated).
    await db.put('floor', (await db.get('gateway', RAW)) as Uint8Array, RAW);
    assert.is(await store.get('floor'), undefined);
    // Truncated and empty values.
    await db.put('bundle', new Uint8Array(3), RAW);
    assert.is(await store.get('bundle'), undefined);
    // entries() skips and drops tampered ones too.
    await store.batch([{ type: 'put', name: 'device/b', value: 2 }]);
    await db.put('device/a', new Uint8Array(40), RAW);
    const seen: string[] = [];
    for await (const [k] of store.entries('device/')) seen.push(k);
    assert.equal(seen, ['device/b']);
    assert.is(await db.get('device/a', RAW), undefined);
    assert.is(store.dropped, dropped.length);
    await store.close();
  });

  t('a data key that the protector cannot open: ERR_STORE_KEY, or a wipe when asked', async () => {
    const name = fresh();
    const { store } = await openStore(name);
    await store.batch([{ type: 'put', name: 'gateway', value: 1 }]);
    await store.close();
    const logger = new MemoryLogger();
    const other = await keyFileProtector(join(dir, `other-${name}`), random, logger);
    await rejects(
      () => SealedStore.open({ db: makeDb(name), protector: other, random, logger }),
      'ERR_STORE_KEY',
    );
    const db = makeDb(name);
    const wiped = await SealedStore.open({ db, protector: other, random, logger, resetOnKeyFailure: true });
    assert.ok(wiped.fresh);
    assert.is(await wiped.get('gateway'), undefined);
    assert.ok(logger.lines.some((l) => l.fields.event === 'store.reset'));
    await wiped.close();
  });

  t('a tampered schema record wipes the store rather than trusting it', async () => {
    const name = fresh();
    const { store, db } = await openStore(name);
    await store.batch([{ type: 'put', name: 'gateway', value: 1 }]);
    const raw = Buffer.from((await db.get('meta/schema', RAW)) as Uint8Array);
    raw[raw.length - 1] = (raw[raw.length - 1] as number) ^ 0xff;
    await db.put('meta/schema', raw, RAW);
    await store.close();
    const { store: again } = await openStore(name);
    assert.ok(again.fresh);
    assert.is(await again.get('gateway'), undefined);
    await again.close();
  });

  t('schema: migrations run in order and atomically; newer or unmigratable stores are refused', async () => {
    const name = fresh();
    const NEXT = STORE_SCHEMA_VERSION + 1;
    const { store } = await openStore(name);
    await store.batch([{ type: 'put', name: 'old', value: { v: 1 } }]);
    await store.close();
    const logger = new MemoryLogger();
    const protector = await keyFileProtector(join(dir, 'kek'), random, logger);
    // No migration from this build's version → refused, store untouched.
    await rejects(
      () =>
        SealedStore.open({
          db: makeDb(name),
          protector,
          random,
          logger,
          schemaVersion: NEXT,
          migrations: [],
        }),
      'ERR_STORE_SCHEMA',
    );
    // A failing migration leaves this build's version and the data as they were.
    await rejects(
      () =>
        SealedStore.open({
          db: makeDb(name),
          protector,
          random,
          logger,
          schemaVersion: NEXT,
          migrations: [
            {
              from: STORE_SCHEMA_VERSION,
              async up(ctx) {
                ctx.queue({ type: 'del', name: 'old' });
                throw new Error('boom');
              },
            },
          ],
        }),
      'ERR_STORE_SCHEMA',
    );
    const migrations = [
      {
        from: STORE_SCHEMA_VERSION,
        async up(ctx: import('../../../runtime/store/migrations.ts').MigrationContext) {
          const old = await ctx.get<{ v: number }>('old');
          ctx.queue({ type: 'del', name: 'old' });
          ctx.queue({ type: 'put', name: 'new', value: { v: (old?.v ?? 0) + 1 } });
        },
      },
    ];
    const next = await SealedStore.open({
      db: makeDb(name),
      protector,
      random,
      logger,
      schemaVersion: NEXT,
      migrations,
    });
    assert.equal(await next.get('new'), { v: 2 });
    assert.is(await next.get('old'), undefined);
    await next.close();
    // Now at NEXT: this build refuses it.
    await rejects(
      () => SealedStore.open({ db: makeDb(name), protector, random, logger }),
      'ERR_STORE_SCHEMA',
    );
  });

  t(
    'schema 1 → 2: the gateway record learns where its CA key lives (software, as every v1 key)',
    async () => {
      const name = fresh();
      const logger = new MemoryLogger();
      const protector = await keyFileProtector(join(dir, 'kek'), random, logger);
      const v1 = await SealedStore.open({
        db: makeDb(name),
        protector,
        random,
        logger,
        schemaVersion: 1,
        migrations: [],
      });
      const rec = { spiffeId: 'spiffe://td/gateway/g', caKey: new Uint8Array([1, 2, 3]), via: 'attest' };
      await v1.batch([{ type: 'put', name: 'gateway', value: rec }]);
      await v1.close();
      const v2 = await SealedStore.open({ db: makeDb(name), protector, random, logger });
      const got = await v2.get<Record<string, unknown>>('gateway');
      assert.is(got?.caKeyBackend, 'software');
      assert.equal([...((got?.caKey as Uint8Array | undefined) ?? [])], [1, 2, 3]);
      assert.is(got?.spiffeId, rec.spiffeId);
      await v2.close();
      // An empty v1 store migrates too (no gateway record is made up).
      const e = fresh();
      await (
        await SealedStore.open({ db: makeDb(e), protector, random, logger, schemaVersion: 1, migrations: [] })
      ).close();
      const ev2 = await SealedStore.open({ db: makeDb(e), protector, random, logger });
      assert.is(await ev2.get('gateway'), undefined);
      await ev2.close();
    },
  );

  t('use after close is a typed error; close twice is harmless', async () => {
    const { store } = await openStore(fresh());
    await store.close();
    await store.close();
    await rejects(() => store.get('x'), 'ERR_STORE_CLOSED');
    await rejects(() => store.batch([{ type: 'del', name: 'x' }]), 'ERR_STORE_CLOSED');
  });

  t.run();
}
