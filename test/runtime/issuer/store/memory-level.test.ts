import { MemoryLevel } from 'memory-level';
import { openLevelStoreOn } from '../../../../runtime/issuer/store-level.ts';
import { issuerStoreSuite } from './suite.ts';

// One MemoryLevel per store; "reopening" opens the same (closed) instance again.
issuerStoreSuite('memory-level', async () => {
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' });
  const open = () => openLevelStoreOn(db as never);
  const store = await open();
  return {
    store,
    second: store,
    async reopen() {
      await store.close();
      return open();
    },
    close: () => store.close(),
  };
});
