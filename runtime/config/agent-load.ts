/**
 * Loading the agent's config file at start-up: the same pipeline as `load.ts` (YAML with lines,
 * migrations, documented environment overrides) validated by the precompiled validator
 * (`agent-validator.gen.ts`, generated from `agent-schema.ts`), so the running agent never loads
 * TypeBox or ajv. Errors are `ConfigError`s listing every problem as `path: message (line N)`,
 * exactly as `loadConfigText(text, AGENT_ROLE)` reports them.
 *
 * @example
 * ```ts
 * const config = await loadAgentConfigFile('/etc/edgeward/agent.yaml', process.env);
 * config.upstream.endpoints[0];
 * ```
 */
import type { ErrorObject } from 'ajv';
import { ConfigError } from '../errors.ts';
import { AGENT_CONFIG_VERSION, AGENT_ENV_OVERRIDES, AGENT_MIGRATIONS } from './agent-role.ts';
import type { AgentConfig } from './agent-schema.ts';
import { validate } from './agent-validator.gen.ts';
import { issuesFromAjv } from './issues.ts';
import { prepareConfigDoc, readConfigText } from './pipeline.ts';

type Validator = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };
const validateAgent = validate as unknown as Validator;

const RULES = { version: AGENT_CONFIG_VERSION, env: AGENT_ENV_OVERRIDES, migrations: AGENT_MIGRATIONS };

/** Parse and validate agent config text (defaults filled in). */
export function loadAgentConfigText(
  text: string,
  env: Readonly<Record<string, string | undefined>> = {},
  file?: string,
): AgentConfig {
  const { doc, lineOf } = prepareConfigDoc(text, RULES, env, file);
  if (!validateAgent(doc))
    throw new ConfigError('ERR_CONFIG_INVALID', issuesFromAjv(validateAgent.errors ?? [], lineOf), file);
  return doc as AgentConfig;
}

/** Read and load an agent config file. */
export async function loadAgentConfigFile(
  file: string,
  env: Readonly<Record<string, string | undefined>> = {},
): Promise<AgentConfig> {
  return loadAgentConfigText(await readConfigText(file), env, file);
}
