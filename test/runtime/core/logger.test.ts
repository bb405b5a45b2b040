/**
 * The agent's JSON-lines logger (runtime/core/logger.ts): pino's line format, levels filtered,
 * fields kept, errors and bigints serialised, a cycle never loses the line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { jsonLinesLogger, type LogLevel } from '../../../runtime/core/logger.ts';

function capture(level: LogLevel) {
  const lines: string[] = [];
  const logger = jsonLinesLogger({
    level,
    name: 'edgeward-agent',
    now: () => 1_700_000_000_123,
    write: (l) => lines.push(l),
  });
  return { logger, lines };
}

test('one JSON object per line in pino layout: level, time, name, fields, msg', () => {
  const { logger, lines } = capture('info');
  logger.info('identity renewed', { event: 'identity.rotated', notAfter: '2026-01-01T00:00:00.000Z', n: 3 });
  assert.is(lines.length, 1);
  assert.is(
    lines[0],
    '{"level":30,"time":1700000000123,"name":"edgeward-agent","event":"identity.rotated","notAfter":"2026-01-01T00:00:00.000Z","n":3,"msg":"identity renewed"}',
  );
  assert.not.ok((lines[0] as string).includes('\n'));
});

test('levels below the configured one are dropped; numbers as pino', () => {
  const { logger, lines } = capture('warn');
  logger.debug('d');
  logger.info('i');
  logger.warn('w');
  logger.error('e');
  assert.equal(
    lines.map((l) => JSON.parse(l).level),
    [40, 50],
  );
  const all = capture('debug');
  all.logger.debug('d');
  assert.is(JSON.parse(all.lines[0] as string).level, 20);
});

test('errors, bigints, undefined and reserved keys; a cycle keeps the line', () => {
  const { logger, lines } = capture('info');
  const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  logger.error('failed "quoted"\nmsg', { err, big: 10n, gone: undefined, level: 'x', msg: 'y', cyclic });
  const o = JSON.parse(lines[0] as string);
  assert.equal(o.err, { type: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:9', code: 'ECONNREFUSED' });
  assert.is(o.big, '10');
  assert.not.ok('gone' in o);
  assert.is(o.level, 50);
  assert.is(o.msg, 'failed "quoted"\nmsg');
  assert.is(o.cyclic, '[unserialisable]');
  assert.not.ok((lines[0] as string).includes('\n'));
});

test.run();
