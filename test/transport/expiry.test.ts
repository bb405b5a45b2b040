/** ExpiryQueue: many deadlines behind one timer on the virtual clock, in order, with removal. */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { VirtualClock } from '../../sim/clock/virtual-clock.ts';
import { type ExpiryEntry, ExpiryQueue } from '../../transport/mqtt/expiry.ts';

interface Item extends ExpiryEntry {
  readonly name: string;
}
const item = (name: string): Item => ({ name, deadline: 0, heapIndex: -1 });

test('entries fall due in deadline order, at their deadline, with one timer armed', async () => {
  const clock = new VirtualClock(1_000_000);
  const due: string[] = [];
  const q = new ExpiryQueue<Item>(clock, 'expiry', (e) => due.push(`${e.name}@${clock.now() - 1_000_000}`));
  q.add(item('c'), clock.now() + 300);
  q.add(item('a'), clock.now() + 100);
  q.add(item('b'), clock.now() + 200);
  q.add(item('a2'), clock.now() + 100);
  assert.is(clock.pendingTimers().length, 1);
  await clock.advance(99);
  assert.equal(due, []);
  await clock.advance(1);
  assert.equal(due.sort(), ['a2@100', 'a@100']);
  await clock.advance(250);
  assert.equal(due.slice(2), ['b@200', 'c@300']);
  assert.is(q.size, 0);
  assert.is(clock.pendingTimers().length, 0, 'nothing left armed');
});

test('a removed entry never falls due; removing the last one disarms the timer', async () => {
  const clock = new VirtualClock(0);
  const due: string[] = [];
  const q = new ExpiryQueue<Item>(clock, 'expiry', (e) => due.push(e.name));
  const a = item('a');
  const b = item('b');
  q.add(a, 100);
  q.add(b, 200);
  q.remove(a);
  q.remove(a); // twice is harmless
  await clock.advance(150);
  assert.equal(due, []);
  q.remove(b);
  assert.is(clock.pendingTimers().length, 0);
  await clock.advance(100);
  assert.equal(due, []);
});

test('an earlier deadline added later re-arms the timer; re-adding moves an entry', async () => {
  const clock = new VirtualClock(0);
  const due: string[] = [];
  const q = new ExpiryQueue<Item>(clock, 'expiry', (e) => due.push(`${e.name}@${clock.now()}`));
  const late = item('late');
  q.add(late, 1000);
  q.add(item('early'), 10);
  q.add(late, 20); // moved
  assert.is(q.size, 2);
  await clock.advance(1000);
  assert.equal(due, ['early@10', 'late@20']);
});

test('clear forgets everything and cancels the timer', async () => {
  const clock = new VirtualClock(0);
  const due: string[] = [];
  const q = new ExpiryQueue<Item>(clock, 'expiry', (e) => due.push(e.name));
  for (let i = 0; i < 10; i++) q.add(item(`e${i}`), 10 + i);
  q.clear();
  assert.is(q.size, 0);
  assert.is(clock.pendingTimers().length, 0);
  await clock.advance(100);
  assert.equal(due, []);
});

test('property: any sequence of adds and removes fires exactly the remaining entries, in order', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ at: fc.integer({ min: 0, max: 500 }), drop: fc.boolean() }), { maxLength: 60 }),
      async (ops) => {
        const clock = new VirtualClock(0);
        const due: Item[] = [];
        const q = new ExpiryQueue<Item>(clock, 'expiry', (e) => {
          assert.ok(e.deadline <= clock.now(), 'never early');
          due.push(e);
        });
        const items = ops.map((_, i) => item(String(i)));
        for (const [i, o] of ops.entries()) q.add(items[i] as Item, o.at);
        for (const [i, o] of ops.entries()) if (o.drop) q.remove(items[i] as Item);
        await clock.advance(1000);
        const expected = items.filter((_, i) => !ops[i]?.drop).map((x) => x.name);
        assert.equal(due.map((x) => x.name).sort(), expected.sort());
        for (let i = 1; i < due.length; i++)
          assert.ok((due[i - 1] as Item).deadline <= (due[i] as Item).deadline, 'in deadline order');
        assert.is(q.size, 0);
      },
    ),
    { numRuns: 100 },
  );
});

test.run();
