/**
 * Listeners (runtime/sources/listeners.ts): with a logger a throwing listener is logged and the
 * others still run; without one its error reaches whoever caused the change; unsubscribe and
 * clear remove listeners.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { Listeners } from '../../../runtime/sources/listeners.ts';

const boom = (): never => {
  throw new Error('boom');
};

test('with a logger: a throwing listener is logged by name and the others still run', () => {
  const logger = new MemoryLogger();
  const l = new Listeners<[number]>('svid', logger);
  const got: number[] = [];
  l.add(boom);
  l.add((n) => got.push(n));
  l.emit(7);
  assert.equal(got, [7]);
  assert.equal(
    logger.lines.map((x) => [x.level, x.fields.event, x.fields.what, x.fields.err]),
    [['error', 'listener.error', 'svid', 'Error: boom']],
  );
});

test('without a logger: the error propagates to the emitter', () => {
  const l = new Listeners<[]>('bundle');
  l.add(boom);
  assert.throws(() => l.emit(), /boom/);
});

test('unsubscribe removes one listener, clear removes all', () => {
  const l = new Listeners<[]>('revocations');
  let a = 0;
  let b = 0;
  const offA = l.add(() => a++);
  l.add(() => b++);
  l.emit();
  offA();
  l.emit();
  assert.equal([a, b], [1, 2]);
  l.clear();
  l.emit();
  assert.equal([a, b], [1, 2]);
});

test('a listener that unsubscribes itself during emit does not disturb the others', () => {
  const l = new Listeners<[]>('svid');
  const order: string[] = [];
  const off = l.add(() => {
    order.push('once');
    off();
  });
  l.add(() => order.push('always'));
  l.emit();
  l.emit();
  assert.equal(order, ['once', 'always', 'always']);
});

test.run();
