/**
 * The QoS 1 ledger's "every message a connected device published gets its PUBACK" books (issue 14
 * item 8): what is owed, what an acknowledgement clears, what a session ended at the budget's
 * end exempts, and that messages queued while disconnected are not owed by this invariant.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { QosLedger } from '../../sim/fleet/qos-ledger.ts';

test('published while connected and never acknowledged: listed and counted once', () => {
  const l = new QosLedger();
  const a = l.sent('d0', true);
  const b = l.sent('d0', true);
  l.sent('d0', false); // queued while offline: not this invariant's
  l.acked('d0', a, 1);
  assert.is(l.stats.sentConnected, 2);
  assert.equal(l.unacknowledged(), [`d0#${b}`]);
  assert.is(l.stats.unacknowledged, 1);
  assert.equal(l.unacknowledged(), [], 'reported once');
});

test('a session ended for good at the budget end: its unacknowledged messages are exempt, counted apart', () => {
  const l = new QosLedger();
  l.sent('d0', true);
  l.sent('d1', true);
  l.exempt('d0');
  assert.is(l.stats.exempted, 1);
  assert.equal(l.unacknowledged(), ['d1#1']);
});

test.run();
