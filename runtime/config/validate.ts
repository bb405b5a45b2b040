/**
 * Validation of a parsed document against a TypeBox schema with ajv: every error at once,
 * each as `path: message`, unknown keys named, custom formats in plain words (`issues.ts`).
 */
import type { TSchema } from '@sinclair/typebox';
import { Ajv, type Options, type ValidateFunction } from 'ajv';
import type { ConfigIssue } from '../errors.ts';
import { FORMATS } from './formats.ts';
import { issuesFromAjv, type LineOf } from './issues.ts';

/**
 * The ajv every config schema is checked with: all errors, defaults filled in, our formats.
 * `scripts/gen-validators.ts` builds its standalone code with this too (plus `code`), so both agree.
 */
export function configAjv(extra: Options = {}): Ajv {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, ...extra });
  for (const [name, f] of Object.entries(FORMATS)) ajv.addFormat(name, f.test);
  return ajv;
}

const ajv = configAjv();

const compiled = new WeakMap<TSchema, ValidateFunction>();

/** Validate `value` in place (defaults are filled in); returns the issues, empty when valid. */
export function validateAgainst(schema: TSchema, value: unknown, lineOf?: LineOf): ConfigIssue[] {
  let validate = compiled.get(schema);
  if (validate === undefined) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  if (validate(value)) return [];
  return issuesFromAjv(validate.errors ?? [], lineOf);
}
