/**
 * Config file migrations. Each entry upgrades a document from `from` to `from + 1`; a file
 * newer than this build is refused rather than guessed at.
 */
import { ConfigError } from '../errors.ts';

export interface Migration {
  readonly from: number;
  up(doc: Record<string, unknown>): Record<string, unknown>;
}

export function migrate(
  doc: Record<string, unknown>,
  current: number,
  migrations: readonly Migration[],
  file?: string,
): Record<string, unknown> {
  const v = doc.version;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new ConfigError(
      'ERR_CONFIG_VERSION',
      [{ path: 'version', message: `must be an integer from 1 to ${current}` }],
      file,
    );
  }
  if (v > current) {
    throw new ConfigError(
      'ERR_CONFIG_VERSION',
      [{ path: 'version', message: `${v} is newer than this edgeward understands (${current})` }],
      file,
    );
  }
  let out = doc;
  for (let at = v; at < current; at++) {
    const step = migrations.find((m) => m.from === at);
    if (step === undefined) {
      throw new ConfigError(
        'ERR_CONFIG_VERSION',
        [{ path: 'version', message: `no migration from ${at}` }],
        file,
      );
    }
    out = { ...step.up(out), version: at + 1 };
  }
  return out;
}
