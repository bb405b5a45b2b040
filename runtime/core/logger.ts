/**
 * A four-method logger. Libraries default to `nullLogger`; the composition root builds a
 * `jsonLinesLogger` (one JSON object per line, pino's line format) for the agent.
 * Fields are structured; never put key material in them.
 *
 * Line format (documented in README "Operations"; compatible with pino tooling such as
 * pino-pretty): `{"level":30,"time":<ms since epoch>,"name":"edgeward-agent",...fields,"msg":"..."}`
 * with level 20 debug, 30 info, 40 warn, 50 error. Errors in fields are written as
 * `{type, message, code}` (no stack); bigints as strings; a field that cannot be serialised
 * (a cycle) is written as `"[unserialisable]"` rather than losing the line.
 *
 * @example
 * ```ts
 * const logger = jsonLinesLogger({ level: 'info', name: 'edgeward-agent', now: () => clock.now(), write: io.out });
 * logger.info('identity renewed', { event: 'identity.rotated', notAfter: '2026-01-01T00:00:00Z' });
 * ```
 */
export type LogFields = Record<string, unknown>;
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

export const nullLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};

/** pino's numeric levels, kept so existing log tooling reads our lines. */
export const LOG_LEVEL_NUMBERS: Readonly<Record<LogLevel, number>> = {
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
};

export interface JsonLinesOptions {
  readonly level: LogLevel;
  /** Written as the `name` field of every line. */
  readonly name: string;
  /** Wall-clock milliseconds for the `time` field (the injected Clock's `now`). */
  readonly now: () => number;
  /** Receives one line without its newline. */
  readonly write: (line: string) => void;
}

/** One JSON object per line; lines below `level` are dropped before any formatting. */
export function jsonLinesLogger(o: JsonLinesOptions): Logger {
  const min = LOG_LEVEL_NUMBERS[o.level];
  const name = JSON.stringify(o.name);
  const line = (level: LogLevel, msg: string, fields: LogFields | undefined): void => {
    const n = LOG_LEVEL_NUMBERS[level];
    if (n < min) return;
    let body = '';
    if (fields !== undefined)
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined || k === 'level' || k === 'time' || k === 'name' || k === 'msg') continue;
        body += `,${JSON.stringify(k)}:${serialise(v)}`;
      }
    o.write(`{"level":${n},"time":${o.now()},"name":${name}${body},"msg":${JSON.stringify(msg)}}`);
  };
  return {
    debug: (msg, f) => line('debug', msg, f),
    info: (msg, f) => line('info', msg, f),
    warn: (msg, f) => line('warn', msg, f),
    error: (msg, f) => line('error', msg, f),
  };
}

function serialise(v: unknown): string {
  try {
    return JSON.stringify(v, replacer) ?? 'null';
  } catch {
    return '"[unserialisable]"';
  }
}

function replacer(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Error) {
    const code = (v as { code?: unknown }).code;
    return { type: v.name, message: v.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  return v;
}

/** A logger that records every line, for tests that assert on what was logged. */
export class MemoryLogger implements Logger {
  readonly lines: { level: LogLevel; msg: string; fields: LogFields }[] = [];
  debug(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: 'debug', msg, fields });
  }
  info(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: 'info', msg, fields });
  }
  warn(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: 'warn', msg, fields });
  }
  error(msg: string, fields: LogFields = {}): void {
    this.lines.push({ level: 'error', msg, fields });
  }
}
