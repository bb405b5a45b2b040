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
import { ConfigError } from '../errors.ts';
import { AGENT_CONFIG_VERSION, AGENT_ENV_OVERRIDES, AGENT_MIGRATIONS } from './agent-role.ts';
import { AgentConfigSchema } from './agent-schema.ts';
import { ISSUER_CONFIG_VERSION, ISSUER_ENV_OVERRIDES, IssuerConfigSchema } from './issuer-schema.ts';
import type { Migration } from './migrations.ts';
import { prepareConfigDoc, readConfigText } from './pipeline.ts';
import { validateAgainst } from './validate.ts';

export interface Role<S extends TSchema> {
  readonly name: 'agent' | 'issuer';
  readonly schema: S;
  readonly version: number;
  readonly env: Readonly<Record<string, string>>;
  readonly migrations: readonly Migration[];
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
  migrations: [],
};

/** Parse and validate config text. `env` is consulted only for the role's documented keys. */
export function loadConfigText<S extends TSchema>(
  text: string,
  role: Role<S>,
  env: Readonly<Record<string, string | undefined>> = {},
  file?: string,
): Static<S> {
  const { doc, lineOf } = prepareConfigDoc(text, role, env, file);
  const issues = validateAgainst(role.schema, doc, lineOf);
  if (issues.length > 0) throw new ConfigError('ERR_CONFIG_INVALID', issues, file);
  return doc as Static<S>;
}

/** Read and load a config file. */
export async function loadConfigFile<S extends TSchema>(
  file: string,
  role: Role<S>,
  env: Readonly<Record<string, string | undefined>> = {},
): Promise<Static<S>> {
  return loadConfigText(await readConfigText(file), role, env, file);
}
