/**
 * The agent's structured log lines: one line per identity event, with a stable `event` name
 * (`identity.rotated`, `clock.jump`, `revocation.applied`, ...) and never key material. Also the
 * two small formatters every part of the agent uses for them: ISO times and error codes.
 *
 * @example
 * ```ts
 * const event = eventLog(logger);
 * event('warn', 'clock jumped forward; checking rotation now', 'clock.jump', { jumpMs });
 * ```
 */
import type { Logger } from '../core/logger.ts';

/** Log one identity event at `level`: `msg` for people, `event` and `fields` for machines. */
export type EventLog = (
  level: 'info' | 'warn' | 'error',
  msg: string,
  event: string,
  fields: Record<string, unknown>,
) => void;

export function eventLog(log: Logger): EventLog {
  return (level, msg, event, fields) => log[level](msg, { event, ...fields });
}

/** Epoch ms as an ISO 8601 UTC time. */
export const iso = (ms: number): string => new Date(ms).toISOString();

/** The stable code of an error (`ERR_*`), or `ERR_UNKNOWN` when it carries none. */
export const codeOf = (err: unknown): string =>
  typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : 'ERR_UNKNOWN';
