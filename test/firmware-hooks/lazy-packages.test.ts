/**
 * The gateway bundle's plugin for lazily imported packages: with esbuild code splitting, a
 * CommonJS package loaded by `await import()` loses its named exports (pinned here on plain
 * esbuild, so an esbuild that fixes it makes that test fail and the plugin can go); with the
 * plugin, `level` (CommonJS) and `@peculiar/x509` (its ES module build) keep them, as Node gives
 * them to `dist/`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  commonJsExportNames,
  isCommonJsFile,
  lazyPackages,
  packageName,
} from '../../firmware-hooks/build/lazy-packages.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MODULES = join(ROOT, 'node_modules');
let dir: string;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'edgeward-lazy-'));
  await writeFile(
    join(dir, 'entry.mjs'),
    [
      "const { Level } = await import('level');",
      "await import('reflect-metadata');",
      "const x509 = await import('@peculiar/x509');",
      'console.log(JSON.stringify({ Level: typeof Level, keyCertSign: x509.KeyUsageFlags?.keyCertSign }));',
    ].join('\n'),
  );
});

test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function buildAndRun(out: string, withPlugin: boolean): Promise<unknown> {
  await esbuild.build({
    entryPoints: [join(dir, 'entry.mjs')],
    outdir: join(dir, out),
    outExtension: { '.js': '.mjs' },
    splitting: true,
    bundle: true,
    platform: 'node',
    format: 'esm',
    nodePaths: [MODULES],
    external: ['classic-level'],
    plugins: withPlugin ? [lazyPackages(ROOT, ['classic-level'])] : [],
    logLevel: 'silent',
    banner: {
      js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
    },
  });
  const r = spawnSync(process.execPath, [join(dir, out, 'entry.mjs')], {
    env: { PATH: '/usr/bin:/bin', NODE_PATH: MODULES },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('plain esbuild splitting: a lazily imported CommonJS package has no named exports', async () => {
  assert.equal(await buildAndRun('plain', false), { Level: 'undefined' });
});

test('with the plugin: level re-exported by name, @peculiar/x509 from its ES module build', async () => {
  assert.equal(await buildAndRun('plugin', true), { Level: 'function', keyCertSign: 32 });
});

test('packageName, commonJsExportNames, isCommonJsFile', () => {
  assert.is(packageName('level'), 'level');
  assert.is(packageName('yaml/util'), 'yaml');
  assert.is(packageName('@peculiar/x509'), '@peculiar/x509');
  assert.is(packageName('@peculiar/x509/sub'), '@peculiar/x509');
  assert.equal(commonJsExportNames({ b: 1, a: 2, default: 3, 'not-an-identifier': 4 }), ['a', 'b']);
  assert.equal(commonJsExportNames(null), []);
  assert.equal(commonJsExportNames('text'), []);
  assert.ok(isCommonJsFile(join(MODULES, 'level/index.js')));
  assert.ok(isCommonJsFile(join(MODULES, '@peculiar/x509/build/x509.cjs.js')));
  assert.not.ok(isCommonJsFile(join(MODULES, 'cbor-x/node-index.js')), 'cbor-x is "type": "module"');
  assert.not.ok(isCommonJsFile(join(ROOT, 'firmware-hooks/build/gateway.mjs')));
});

test.run();
