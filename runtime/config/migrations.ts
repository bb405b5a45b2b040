/**
 * Config file migrations. Each entry upgrades a document from `from` to `from + 1`; a file
 * newer than this build is refused rather than guessed at.
 */
import { ConfigError } from '../errors.ts';

export interface Migration {
  readonly from: number;
  up(doc: Record<string, unknown>): Record<string, unknown>;
  /** Top-level keys this step renames, new → old, so errors on the new key name the old key's line. */
  readonly renames?: Readonly<Record<string, string>>;
}

/** The renames (new → old top-level key) of the steps that upgrade a document from `version`. */
export function renamesFrom(
  version: unknown,
  current: number,
  migrations: readonly Migration[],
): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof version !== 'number') return out;
  for (const m of migrations) if (m.from >= version && m.from < current) Object.assign(out, m.renames);
  return out;
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
