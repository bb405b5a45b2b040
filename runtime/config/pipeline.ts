/**
 * The schema-independent half of loading a config file: parse YAML (positions kept) → migrate to
 * the current version → apply the role's documented environment overrides. What is left is
 * validation, done by ajv from the TypeBox schema (`load.ts`) or, for the agent's start-up, by
 * the precompiled validator (`agent-load.ts`). Loads neither TypeBox nor ajv.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../errors.ts';
import type { LineOf } from './issues.ts';
import { type Migration, migrate, renamesFrom } from './migrations.ts';
import { parseYaml } from './yaml.ts';

export interface DocRules {
  readonly version: number;
  readonly env: Readonly<Record<string, string>>;
  readonly migrations: readonly Migration[];
}

/** Parse, migrate and apply env overrides; the returned document is not validated yet. */
export function prepareConfigDoc(
  text: string,
  rules: DocRules,
  env: Readonly<Record<string, string | undefined>>,
  file?: string,
): { doc: Record<string, unknown>; lineOf: LineOf } {
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
  const renames = renamesFrom((raw as Record<string, unknown>).version, rules.version, rules.migrations);
  const doc = migrate(raw as Record<string, unknown>, rules.version, rules.migrations, file);
  applyEnv(doc, rules.env, env);
  const lineOf: LineOf = (path) => {
    const old = typeof path[0] === 'string' ? renames[path[0]] : undefined;
    return parsed.doc.lineOf(old === undefined ? path : [old, ...path.slice(1)]);
  };
  return { doc, lineOf };
}

/** Read a config file's text; an unreadable file is `ERR_CONFIG_UNREADABLE`. */
export async function readConfigText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    throw new ConfigError('ERR_CONFIG_UNREADABLE', [{ path: '', message: (cause as Error).message }], file, {
      cause,
    });
  }
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
