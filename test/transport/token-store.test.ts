/** One conformance suite for both token stores: memory and abstract-level (memory-level here). */
import { MemoryLevel } from 'memory-level';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LevelTokenStore, MemoryTokenStore, type TokenStore } from '../../transport/enroll/token-store.ts';

const dbs: MemoryLevel<string, string>[] = [];
const factories: [string, () => TokenStore][] = [
  ['memory', () => new MemoryTokenStore()],
  [
    'level sublevel',
    () => {
      const db = new MemoryLevel<string, string>();
      dbs.push(db);
      return new LevelTokenStore(db.sublevel<string, string>('device-tokens', {}));
    },
  ],
];

for (const [name, make] of factories) {
  test(`${name}: take is single use, even when two takes race`, async () => {
    const s = make();
    await s.put('h1', { deviceId: 'a', expiresAt: 100 });
    const [x, y] = await Promise.all([s.take('h1'), s.take('h1')]);
    assert.equal([x, y].filter(Boolean), [{ deviceId: 'a', expiresAt: 100 }]);
    assert.is(await s.take('h1'), undefined);
    assert.is(await s.take('never'), undefined);
  });

  test(`${name}: prune removes only expired records`, async () => {
    const s = make();
    await s.put('old', { deviceId: 'a', expiresAt: 10 });
    await s.put('new', { deviceId: 'b', expiresAt: 1000 });
    assert.is(await s.prune(500), 1);
    assert.is(await s.take('old'), undefined);
    assert.equal(await s.take('new'), { deviceId: 'b', expiresAt: 1000 });
  });
}

test('a level store ignores a damaged record instead of failing', async () => {
  const db = new MemoryLevel<string, string>();
  dbs.push(db);
  const sub = db.sublevel<string, string>('t', {});
  await sub.put('bad', '{not json');
  const s = new LevelTokenStore(sub);
  assert.is(await s.take('bad'), undefined);
});

test.after(async () => {
  for (const db of dbs) await db.close();
});
test.run();
