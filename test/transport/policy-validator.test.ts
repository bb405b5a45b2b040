/**
 * The broker policy's precompiled validator (transport/policy/policy-validator.gen.ts): up to
 * date with schema.ts, the same answers as the runtime ajv validator on valid and invalid
 * documents (same paths and lines), and loading a policy pulls in neither TypeBox nor ajv.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { validateAgainst } from '../../runtime/config/validate.ts';
import { parseYaml } from '../../runtime/config/yaml.ts';
import { GENERATED, validatorSource } from '../../scripts/gen-validators.ts';
import { parsePolicy } from '../../transport/policy/load.ts';
import { PolicySchema } from '../../transport/policy/schema.ts';

const GOOD = `version: 1
rules:
  - match: "{self}/device/*"
    publish: ["devices/{device}/#"]
    subscribe: ["devices/{device}/#"]
`;
const BAD = [
  GOOD.replace('version: 1', 'version: 2'),
  GOOD.replace('    publish:', '    pubish:'),
  GOOD.replace('["devices/{device}/#"]\n    subscribe', '"devices/x"\n    subscribe'),
  'version: 1\nrules: {}\n',
  'version: 1\n',
  `${GOOD}  - match: "{self}/device/*"\n    clientId: sometimes\n    maxConnections: -1\n`,
];

test('the generated policy validator is up to date with schema.ts', () => {
  assert.ok(
    readFileSync(GENERATED.policy.file, 'utf8') === validatorSource('policy'),
    'run: node --import tsx scripts/gen-validators.ts --write',
  );
});

test('a valid policy parses; invalid ones give the runtime validator’s issues and lines', () => {
  const ok = parsePolicy(GOOD);
  assert.ok(ok.ok);
  for (const text of BAD) {
    const r = parsePolicy(text);
    assert.not.ok(r.ok, text);
    if (r.ok) continue;
    const parsed = parseYaml(text);
    assert.ok(parsed.ok);
    if (!parsed.ok) continue;
    const expected = validateAgainst(PolicySchema, parsed.doc.value, parsed.doc.lineOf).map((i) => {
      const m = /^(.*) \(line (\d+)\)$/.exec(i.message);
      return { path: i.path, message: m ? m[1] : i.message, line: m ? Number(m[2]) : undefined };
    });
    assert.ok(expected.length > 0, text);
    assert.equal(r.issues, expected, text);
  }
});

test('loading a policy pulls in neither TypeBox nor ajv code', () => {
  const hooks = `export async function load(url, ctx, next) { if (/node_modules\\/(ajv|@sinclair)\\//.test(url)) process.stderr.write('LOADED ' + url + '\\n'); return next(url, ctx); }`;
  const probe = `
    const { register } = await import('node:module');
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));
    const { parsePolicy } = await import(${JSON.stringify(new URL('../../transport/policy/load.ts', import.meta.url).href)});
    if (!parsePolicy(${JSON.stringify(GOOD)}).ok) process.exit(3);`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], {
    encoding: 'utf8',
  });
  assert.is(r.status, 0, r.stderr);
  assert.not.match(r.stderr, /LOADED/);
});

test.run();
