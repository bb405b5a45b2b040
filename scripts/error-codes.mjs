#!/usr/bin/env node
// The README's catalogue of error codes, generated from the errors.ts of each top-level folder
// (each code with the doc comment above it). `--write` updates README.md between its markers;
// without it, prints the table. `npm test` (scripts/test.mjs, its docs check) fails when the README
// is out of date.
import { readFileSync, writeFileSync } from 'node:fs';

const ROOT = new URL('..', import.meta.url).pathname;
const FILES = [
  'runtime/errors.ts',
  'attestors/errors.ts',
  'transport/errors.ts',
  'firmware-hooks/errors.ts',
  'sim/errors.ts',
];
const BEGIN = '<!-- error-codes:begin -->';
const END = '<!-- error-codes:end -->';

export function catalogue() {
  const rows = [];
  const seen = new Set();
  for (const file of FILES) {
    const folder = file.split('/')[0];
    let doc = '';
    let inDoc = false;
    let buf = [];
    for (const line of readFileSync(new URL(file, `file://${ROOT}`), 'utf8').split('\n')) {
      const t = line.trim();
      if (t.startsWith('/**')) {
        inDoc = true;
        buf = [];
      }
      if (inDoc) {
        buf.push(t.replace(/^\/\*\*|\*\/$|^\*/g, '').trim());
        if (t.endsWith('*/')) {
          inDoc = false;
          doc = buf.filter(Boolean).join(' ');
        }
        continue;
      }
      const m = /^\|?\s*'(ERR_[A-Z0-9_]+)'/.exec(t);
      if (m) {
        const code = m[1];
        if (!seen.has(code)) rows.push(`| \`${code}\` | ${folder} | ${doc.replace(/\|/g, '\\|') || '—'} |`);
        seen.add(code);
        doc = '';
      } else if (t !== '' && !t.startsWith('|')) doc = '';
    }
  }
  return ['| code | folder | meaning |', '|---|---|---|', ...rows].join('\n');
}

export function readmeWithCatalogue(readme) {
  const a = readme.indexOf(BEGIN);
  const b = readme.indexOf(END);
  if (a < 0 || b < a) throw new Error(`README.md lacks the ${BEGIN} … ${END} markers`);
  return `${readme.slice(0, a + BEGIN.length)}\n${catalogue()}\n${readme.slice(b)}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes('--write')) {
    const p = `${ROOT}README.md`;
    writeFileSync(p, readmeWithCatalogue(readFileSync(p, 'utf8')));
  } else console.log(catalogue());
}
