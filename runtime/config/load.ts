/**
 * Loading a role's config file: read → parse YAML → migrate to the current version →
 * apply the documented environment overrides → validate. Errors are `ConfigError`s that
 * list every problem with its path.
 *
 * @example
 * ```ts
 * const cfg = loadConfigText(text, AGENT_ROLE, process.env, 'agent.yaml');
 * cfg.upstream.endpoints[0];
 * ```
 */
import { readFile } from 'node:fs/promises';
import type { Static, TSchema } from '@sinclair/typebox';
import { ConfigError } from '../errors.ts';
import { AGENT_CONFIG_VERSION, AGENT_ENV_OVERRIDES, AgentConfigSchema } from './agent-schema.ts';
import { ISSUER_CONFIG_VERSION, ISSUER_ENV_OVERRIDES, IssuerConfigSchema } from './issuer-schema.ts';
import { type Migration, migrate } from './migrations.ts';
import { validateAgainst } from './validate.ts';
import { parseYaml } from './yaml.ts';

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
  migrations: [],
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
  const parsed = parseYaml(text);
  if (!parsed.ok) throw new ConfigError('ERR_CONFIG_INVALID', parsed.issues, file);
  const raw = parsed.doc.value;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(
      'ERR_CONFIG_INVALID',
      [{ path: '', message: 'must be a mapping of keys to values' }],
      file,
    );
  }
  const doc = migrate(raw as Record<string, unknown>, role.version, role.migrations, file);
  applyEnv(doc, role.env, env);
  const issues = validateAgainst(role.schema, doc, parsed.doc.lineOf);
  if (issues.length > 0) throw new ConfigError('ERR_CONFIG_INVALID', issues, file);
  return doc as Static<S>;
}

/** Read and load a config file. */
export async function loadConfigFile<S extends TSchema>(
  file: string,
  role: Role<S>,
  env: Readonly<Record<string, string | undefined>> = {},
): Promise<Static<S>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new ConfigError('ERR_CONFIG_UNREADABLE', [{ path: '', message: (cause as Error).message }], file, {
      cause,
    });
  }
  return loadConfigText(text, role, env, file);
}

function applyEnv(
  doc: Record<string, unknown>,
  overrides: Readonly<Record<string, string>>,
  env: Readonly<Record<string, string | undefined>>,
): void {
  for (const [name, path] of Object.entries(overrides)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    const keys = path.split('.');
    let node = doc;
    for (const k of keys.slice(0, -1)) {
      if (node[k] === undefined || node[k] === null || typeof node[k] !== 'object') node[k] = {};
      node = node[k] as Record<string, unknown>;
    }
    const last = keys[keys.length - 1] as string;
    node[last] = path === 'upstream.endpoints' ? value.split(',').map((s) => s.trim()) : value;
  }
}
