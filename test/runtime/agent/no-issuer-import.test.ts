// ARCHITECTURE.md §6: the agent and the issuer never import each other; only the composition
// root (runtime/cli/) wires them together (the dev plan of `npm start`).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const ROOT = join(import.meta.dirname, '..', '..', '..');

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f));
}

/** Every module specifier of a static or dynamic import (or re-export) in `file`. */
function specifiers(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return [...text.matchAll(/(?:from\s+|import\s*\(\s*)['"]([^'"]+)['"]/g)].map((m) => m[1] as string);
}

const offenders = (dir: string, forbidden: RegExp): string[] =>
  sources(dir).flatMap((f) =>
    specifiers(f)
      .filter((s) => forbidden.test(s))
      .map((s) => `${f}: ${s}`),
  );

test('nothing in runtime/agent/ imports runtime/issuer/', () => {
  assert.ok(sources('runtime/agent').length > 10, 'the agent sources are found');
  assert.equal(offenders('runtime/agent', /(^|\/)issuer\//), []);
});

test('nothing in runtime/issuer/ imports runtime/agent/', () => {
  assert.ok(sources('runtime/issuer').length > 10, 'the issuer sources are found');
  assert.equal(offenders('runtime/issuer', /(^|\/)agent\//), []);
});

test('the check sees an import of the issuer (it can fail)', () => {
  assert.equal(offenders('runtime/cli', /(^|\/)issuer\//).length > 0, true);
});

test.run();
