import { MemoryLevel } from 'memory-level';
import type { LevelDb } from '../../../runtime/store/sealed-store.ts';
import { storeSuite } from './suite.ts';

// One MemoryLevel per name; "reopening" returns the same instance (closed dbs reopen on open()).
const dbs = new Map<string, LevelDb>();
storeSuite('memory-level', (name) => {
  let db = dbs.get(name);
  if (db === undefined) {
    db = new MemoryLevel<string, Uint8Array>({
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    }) as unknown as LevelDb;
    dbs.set(name, db);
  }
  return db;
});
