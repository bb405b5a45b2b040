/**
 * ajv error objects → `ConfigIssue`s (`path: message (line N)`): unknown keys and missing keys
 * named, custom formats in plain words, one line per distinct problem. Shared by the runtime ajv
 * validator (`validate.ts`) and the agent's precompiled one (`agent-load.ts`); imports no ajv code.
 */
import type { ErrorObject } from 'ajv';
import type { ConfigIssue } from '../errors.ts';
import { FORMATS } from './formats.ts';
import { formatPath } from './yaml.ts';

export type LineOf = (path: (string | number)[]) => number | undefined;

/** Map ajv's errors to issues, keeping each distinct message once. */
export function issuesFromAjv(errors: readonly ErrorObject[], lineOf?: LineOf): ConfigIssue[] {
  const issues = errors.filter(relevant).map((e) => toIssue(e, lineOf));
  // Unions report one error per branch; keep each distinct message once.
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.path}|${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function relevant(e: ErrorObject): boolean {
  // The union's summary error duplicates the per-branch ones, which say more; so does an `if`'s
  // ("must match then schema") the `then` branch's own error.
  return e.keyword !== 'anyOf' && e.keyword !== 'if';
}

function segments(instancePath: string): (string | number)[] {
  if (instancePath === '') return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function toIssue(e: ErrorObject, lineOf?: LineOf): ConfigIssue {
  const path = segments(e.instancePath);
  let message: string;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String((e.params as { additionalProperty: string }).additionalProperty);
      path.push(key);
      message = 'unknown key';
      break;
    }
    case 'required': {
      path.push(String((e.params as { missingProperty: string }).missingProperty));
      message = 'is required';
      break;
    }
    case 'format': {
      const fmt = String((e.params as { format: string }).format);
      message = FORMATS[fmt]?.phrase ?? `must be ${fmt}`;
      break;
    }
    case 'const': {
      message = `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}`;
      break;
    }
    default:
      message = e.message ?? e.keyword;
  }
  // A missing key has no line of its own: the line of the mapping that lacks it.
  const line = lineOf?.(path) ?? (e.keyword === 'required' ? lineOf?.(path.slice(0, -1)) : undefined);
  return { path: formatPath(path), message: line === undefined ? message : `${message} (line ${line})` };
}
