/**
 * Replica heartbeats (`replica/<instance>`, `ca-replicas.ts`) read back malformed are checked as
 * live input, denying: a `holds` that is not a list of fingerprints holds nothing (the replica
 * still counts as live and lacking the key), an `at` that is not a time is not live and is pruned;
 * neither crashes `ca rotate`'s check.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { listBeats, liveBeats, pruneBeats, writeBeat } from '../../../runtime/issuer/ca-replicas.ts';
import { K } from '../../../runtime/issuer/records.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';

test('malformed heartbeats: bad holds hold nothing, a bad time is not live and is pruned', async () => {
  const store = await openMemoryStore();
  const now = 200_000_000; // past the default staleness (a day) after 0
  await writeBeat(store, 'good', { at: now, holds: ['aa'] });
  await store.batch([
    { type: 'put', key: K.replica('no-holds'), value: { at: now, holds: 'aa' } },
    { type: 'put', key: K.replica('mixed'), value: { at: now, holds: ['aa', 7] } },
    { type: 'put', key: K.replica('no-time'), value: { at: String(now), holds: ['aa'] } },
    { type: 'put', key: K.replica('junk'), value: 'junk' },
  ]);
  const beats = await listBeats(store);
  const byId = Object.fromEntries(beats.map((b) => [b.id, b]));
  assert.equal(byId.good?.holds, ['aa']);
  assert.equal(byId['no-holds']?.holds, []);
  assert.equal(byId.mixed?.holds, []);
  assert.is(byId['no-time']?.at, 0);
  const live = liveBeats(beats, now, 90_000).map((b) => b.id);
  assert.equal(live.sort(), ['good', 'mixed', 'no-holds']);
  assert.equal(
    live.filter((id) => !byId[id]?.holds.includes('aa')).sort(),
    ['mixed', 'no-holds'],
    'a live replica with unreadable holds lacks the key',
  );
  await pruneBeats(store, now);
  assert.equal((await listBeats(store)).map((b) => b.id).sort(), ['good', 'mixed', 'no-holds']);
  await store.close();
});

test.run();
