import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { issuerCbor, openLevelStore } from '../../../../runtime/issuer/store.ts';
import { rejects } from '../../../helpers/rejects.ts';
import { issuerStoreSuite } from './suite.ts';

const root = mkdtempSync(join(tmpdir(), 'edgeward-issuer-store-'));
let n = 0;
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

issuerStoreSuite('classic-level', async () => {
  const dir = join(root, `db${n++}`);
  const store = await openLevelStore(dir);
  return {
    store,
    second: store,
    async reopen() {
      await store.close();
      return openLevelStore(dir);
    },
    close: () => store.close(),
  };
});

/** A LevelDB written by the schema-1 store: raw CBOR values, meta/schema 1, meta/revseq. */
async function schemaOne(dir: string, schema: number): Promise<void> {
  const db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.batch([
    { type: 'put', key: 'meta/schema', value: issuerCbor.encode(schema) },
    { type: 'put', key: 'meta/revseq', value: issuerCbor.encode(7) },
    { type: 'put', key: 'gw/old', value: issuerCbor.encode({ name: 'old', disabled: false }) },
  ]);
  await db.close();
}

test('a schema-1 LevelDB store opens as schema 2: old values at version 0, rev continues after meta/revseq', async () => {
  const dir = join(root, 'v1');
  await schemaOne(dir, 1);
  const store = await openLevelStore(dir);
  try {
    assert.equal(await store.getEntry('gw/old'), { value: { name: 'old', disabled: false }, version: 0 });
    await rejects(
      () => store.batch([{ type: 'version', key: 'gw/old', version: 1 }]),
      'ERR_ISSUER_STORE_CONFLICT',
    );
    const r = await store.batch([
      { type: 'version', key: 'gw/old', version: 0 },
      { type: 'put', key: 'gw/old', value: { name: 'old', disabled: true } },
      { type: 'put-next', sequence: 'rev', key: (s) => `rev/${s}`, value: (s) => s },
    ]);
    assert.equal(r.sequences, [8]);
    assert.is(r.version, 1);
  } finally {
    await store.close();
  }
  const again = await openLevelStore(dir);
  assert.is(await again.nextSequence('rev'), 9);
  await again.close();
});

test('a LevelDB store of a newer schema is refused and left as it was', async () => {
  const dir = join(root, 'v3');
  await schemaOne(dir, 3);
  await rejects(() => openLevelStore(dir), 'ERR_ISSUER_STORE_SCHEMA_NEWER');
  const db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
  assert.is(issuerCbor.decode((await db.get('meta/schema')) as Uint8Array), 3);
  assert.is((await db.keys().all()).length, 3);
  await db.close();
});

test.run();
