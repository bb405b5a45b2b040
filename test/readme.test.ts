import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
// @ts-expect-error: a plain .mjs script without type declarations
import { readmeWithCatalogue } from '../scripts/error-codes.mjs';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

test('the README quick start is exactly the two commands', () => {
  assert.match(readme, /```sh\nnpm install && npm start\nnpm test\n```/);
});

test("the README's error-code catalogue lists every code of every errors.ts", () => {
  assert.is(readmeWithCatalogue(readme), readme, 'run: node scripts/error-codes.mjs --write');
});

test.run();
