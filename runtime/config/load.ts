/**
 * Loading a role's config file: read → parse YAML → migrate to the current version →
 * apply the documented environment overrides (`pipeline.ts`) → validate with ajv from the schema.
 * The agent's start-up uses `agent-load.ts` instead (precompiled validator, no TypeBox or ajv). Errors are `ConfigError`s that
 * list every problem with its path.
 *
 * @example
 * ```ts
 * const cfg = loadConfigText(text, AGENT_ROLE, process.env, 'agent.yaml');
 * cfg.upstream.endpoints[0];
 * ```
 */
import type { Static, TSchema } from '@sinclair/typebox';
import { ConfigError, type ConfigIssue } from '../errors.ts';
import { AGENT_CONFIG_VERSION, AGENT_ENV_OVERRIDES, AGENT_MIGRATIONS } from './agent-role.ts';
import { AgentConfigSchema } from './agent-schema.ts';
import { issuerBounds, issuerCaBounds } from './issuer-bounds.ts';
import {
  ISSUER_CONFIG_VERSION,
  ISSUER_ENV_OVERRIDES,
  ISSUER_MIGRATIONS,
  IssuerConfigSchema,
} from './issuer-schema.ts';
import type { LineOf } from './issues.ts';
import type { Migration } from './migrations.ts';
import { prepareConfigDoc, readConfigText } from './pipeline.ts';
import { validateAgainst } from './validate.ts';

export interface Role<S extends TSchema> {
  readonly name: 'agent' | 'issuer';
  readonly schema: S;
  readonly version: number;
  readonly env: Readonly<Record<string, string>>;
  readonly migrations: readonly Migration[];
  /** Bounds between values, checked once the schema passes (issues with path and line). */
  readonly check?: (doc: Static<S>, lineOf: LineOf) => ConfigIssue[];
  /** Checks that read a file the config names, at `now` (the issuer CA's remaining lifetime). */
  readonly checkFiles?: (doc: Static<S>, lineOf: LineOf, now: number) => Promise<ConfigIssue[]>;
}

export const AGENT_ROLE: Role<typeof AgentConfigSchema> = {
  name: 'agent',
  schema: AgentConfigSchema,
  version: AGENT_CONFIG_VERSION,
  env: AGENT_ENV_OVERRIDES,
  migrations: AGENT_MIGRATIONS,
};

export const ISSUER_ROLE: Role<typeof IssuerConfigSchema> = {
  name: 'issuer',
  schema: IssuerConfigSchema,
  version: ISSUER_CONFIG_VERSION,
  env: ISSUER_ENV_OVERRIDES,
  migrations: ISSUER_MIGRATIONS,
  check: issuerBounds,
  checkFiles: issuerCaBounds,
};

/** Parse and validate config text. `env` is consulted only for the role's documented keys. */
export function loadConfigText<S extends TSchema>(
  text: string,
  role: Role<S>,
  env: Readonly<Record<string, string | undefined>> = {},
  file?: string,
): Static<S> {
  return loadDoc(text, role, env, file).cfg;
}

function loadDoc<S extends TSchema>(
  text: string,
  role: Role<S>,
  env: Readonly<Record<string, string | undefined>>,
  file?: string,
): { cfg: Static<S>; lineOf: LineOf } {
  const { doc, lineOf } = prepareConfigDoc(text, role, env, file);
  const issues = validateAgainst(role.schema, doc, lineOf);
  if (issues.length === 0 && role.check !== undefined) issues.push(...role.check(doc as Static<S>, lineOf));
  if (issues.length > 0) throw new ConfigError('ERR_CONFIG_INVALID', issues, file);
  return { cfg: doc as Static<S>, lineOf };
}

/**
 * Read and load a config file. With `now`, the role's file checks run too (the issuer: the
 * offline budget against what is left of its CA certificate).
 */
export async function loadConfigFile<S extends TSchema>(
  file: string,
  role: Role<S>,
  env: Readonly<Record<string, string | undefined>> = {},
  options: { now?: number } = {},
): Promise<Static<S>> {
  const { cfg, lineOf } = loadDoc(await readConfigText(file), role, env, file);
  if (options.now !== undefined && role.checkFiles !== undefined) {
    const issues = await role.checkFiles(cfg, lineOf, options.now);
    if (issues.length > 0) throw new ConfigError('ERR_CONFIG_INVALID', issues, file);
  }
  return cfg;
}
