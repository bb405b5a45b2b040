import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sleep } from '../../runtime/core/clock.ts';
import { VirtualClock } from '../../sim/clock/virtual-clock.ts';

test('timers run in deadline order when time advances, not before', async () => {
  const clock = new VirtualClock(0);
  const seen: string[] = [];
  clock.setTimer('b', 200, () => seen.push(`b@${clock.now()}`));
  clock.setTimer('a', 100, () => seen.push(`a@${clock.now()}`));
  const c = clock.setTimer('c', 150, () => seen.push('c'));
  c.cancel();
  await clock.advance(99);
  assert.equal(seen, []);
  await clock.advance(200);
  assert.equal(seen, ['a@100', 'b@200']);
  assert.is(clock.now(), 299);
});

test('async work started by a timer can schedule further timers within the same advance', async () => {
  const clock = new VirtualClock(0);
  let ticks = 0;
  const loop = async (): Promise<void> => {
    while (ticks < 5) {
      await sleep(clock, 10);
      ticks++;
    }
  };
  const done = loop();
  await clock.advance(50);
  await done;
  assert.is(ticks, 5);
});

test('a wall-clock jump keeps timers at their remaining delay', async () => {
  const clock = new VirtualClock(1_000_000);
  let fired = false;
  clock.setTimer('renew', 500, () => {
    fired = true;
  });
  clock.set(0);
  await clock.advance(499);
  assert.is(fired, false);
  await clock.advance(1);
  assert.is(fired, true);
});

test('sleep rejects with the abort reason', async () => {
  const clock = new VirtualClock(0);
  const ac = new AbortController();
  const p = sleep(clock, 1000, ac.signal);
  ac.abort(new Error('stop'));
  try {
    await p;
    assert.unreachable();
  } catch (err) {
    assert.is((err as Error).message, 'stop');
  }
  assert.equal(clock.pendingTimers(), []);
});

test.run();
