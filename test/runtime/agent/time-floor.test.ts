import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CircuitBreaker } from '../../../runtime/agent/breaker.ts';
import { TimeFloor } from '../../../runtime/agent/time-floor.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';

const T = Date.UTC(2026, 10, 1);
const WEEK = 7 * 86_400_000;

test('the floor follows the wall clock only as fast as monotonic time since the last evidence', async () => {
  const clock = new VirtualClock(T);
  const floor = new TimeFloor(0, clock.monotonic());
  floor.witness(T - 30_000, clock.monotonic()); // the issuer's NotBefore
  assert.is(floor.value, T - 30_000);
  await clock.advance(60_000);
  assert.ok(floor.observe(clock.now(), clock.monotonic()));
  assert.is(floor.value, T + 30_000, 'anchor + elapsed, not the wall clock');
  clock.set(clock.now() + WEEK); // a wrong RTC or NTP answer
  await clock.advance(60_000);
  floor.observe(clock.now(), clock.monotonic());
  assert.is(floor.value, T + 90_000, 'a forward jump does not drag the floor');
  clock.set(T + 120_000); // put right
  assert.ok(floor.trusted(clock.now()), 'the corrected clock is trusted at once');
});

test('a clock behind the persisted floor is untrusted and expiry is judged at the floor', () => {
  const floor = new TimeFloor(T, 0, 60_000);
  assert.is(floor.trusted(T - 59_000), true, 'within the NTP tolerance');
  assert.is(floor.trusted(0), false, '1970');
  assert.is(floor.effectiveNow(0), T);
  assert.is(floor.observe(0, 10_000), false);
  assert.is(floor.value, T);
});

test('an open breaker times itself on the monotonic clock, not the wall clock', async () => {
  const clock = new VirtualClock(T);
  const breaker = new CircuitBreaker({ failures: 2, openMs: 60_000 }, clock);
  breaker.failure();
  assert.is(breaker.state, 'closed');
  breaker.failure();
  assert.is(breaker.state, 'open');
  clock.set(T + WEEK);
  assert.is(breaker.state, 'open', 'a forward jump does not close it early');
  clock.set(T);
  await clock.advance(60_000);
  assert.is(breaker.state, 'half-open', 'and a jump back does not hold it open');
  breaker.success();
  assert.is(breaker.allow(), true);
});

test.run();
