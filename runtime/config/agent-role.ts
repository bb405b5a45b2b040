/**
 * The agent config's version, migrations and environment overrides: everything about the agent
 * role that is not the schema itself, so the agent's start-up (`agent-load.ts`) needs no TypeBox.
 *
 * Versions: 1 — the first layout; 2 — adds the optional `bridge` and `factory` sections (no key of
 * version 1 moved, so the migration only bumps the number). A file newer than this build is
 * refused with `ERR_CONFIG_VERSION` rather than guessed at (an OTA rollback keeps the old agent
 * from half-reading a new file).
 */
import type { Migration } from './migrations.ts';

export const AGENT_CONFIG_VERSION = 2;

export const AGENT_MIGRATIONS: readonly Migration[] = [
  // 1 → 2: `bridge` and `factory` are new optional sections; nothing else changed.
  { from: 1, up: (doc) => ({ ...doc }) },
];

/** Keys an environment variable may override. Never a secret: secrets live in files. */
export const AGENT_ENV_OVERRIDES = {
  EDGEWARD_LOG_LEVEL: 'log.level',
  EDGEWARD_TPM: 'tpm',
  EDGEWARD_DATA_DIR: 'dataDir',
  EDGEWARD_UPSTREAM: 'upstream.endpoints',
} as const;
