/**
 * Validation of a parsed document against a TypeBox schema with ajv: every error at once,
 * each as `path: message`, unknown keys named, custom formats in plain words.
 */
import type { TSchema } from '@sinclair/typebox';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { ConfigIssue } from '../errors.ts';
import { FORMATS } from './types.ts';
import { formatPath } from './yaml.ts';

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false });
for (const [name, f] of Object.entries(FORMATS)) ajv.addFormat(name, f.test);

const compiled = new WeakMap<TSchema, ValidateFunction>();

/** Validate `value` in place (defaults are filled in); returns the issues, empty when valid. */
export function validateAgainst(
  schema: TSchema,
  value: unknown,
  lineOf?: (path: (string | number)[]) => number | undefined,
): ConfigIssue[] {
  let validate = compiled.get(schema);
  if (validate === undefined) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  if (validate(value)) return [];
  const issues = (validate.errors ?? []).filter(relevant).map((e) => toIssue(e, lineOf));
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
  // The union's summary error duplicates the per-branch ones, which say more.
  return e.keyword !== 'anyOf';
}

function segments(instancePath: string): (string | number)[] {
  if (instancePath === '') return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function toIssue(e: ErrorObject, lineOf?: (path: (string | number)[]) => number | undefined): ConfigIssue {
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
  const line = lineOf?.(path);
  return { path: formatPath(path), message: line === undefined ? message : `${message} (line ${line})` };
}
