/**
 * An esbuild plugin for the split gateway bundle: packages that our code loads lazily with
 * `await import('pkg')` keep their named exports.
 *
 * With code splitting, esbuild puts a lazily imported package in its own chunk. When that package
 * is CommonJS, the chunk exports only `default` (the `module.exports` object), so
 * `const { Level } = await import('level')` would read `undefined` — Node, running `dist/`, gives
 * the names. This plugin redirects each dynamic import of a bare package specifier:
 * - to the package's own ES module build when it declares one (`module` field; @peculiar/x509);
 * - otherwise, when the package resolves to CommonJS, to a small ES module that re-exports by name
 *   what the package exports (`export { Level } from 'level'`), the names read from the package
 *   itself at build time. A package that cannot be loaded at build time fails the build.
 * ES module packages, `node:` builtins and externals are left alone.
 *
 * @example
 * ```ts
 * await esbuild.build({ ..., splitting: true, plugins: [lazyPackages(ROOT, EXTERNAL)] });
 * ```
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Plugin } from 'esbuild';

const NAMESPACE = 'edgeward-lazy-cjs';
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

interface PackageJson {
  readonly type?: string;
  readonly module?: string;
  readonly exports?: unknown;
}

/** `@scope/name/sub` → `@scope/name`; `name/sub` → `name`. */
export function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

/** The names `module.exports` carries, as `import { name }` would see them. */
export function commonJsExportNames(value: unknown): string[] {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return [];
  return Object.keys(value)
    .filter((n) => n !== 'default' && IDENTIFIER.test(n))
    .sort();
}

/** Whether Node reads `file` as CommonJS: `.cjs`, or `.js` under a package.json without `"type": "module"`. */
export function isCommonJsFile(file: string): boolean {
  if (file.endsWith('.cjs')) return true;
  if (!file.endsWith('.js')) return false;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    try {
      return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson).type !== 'module';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (dirname(dir) === dir) return true;
  }
}

export function lazyPackages(root: string, external: readonly string[]): Plugin {
  const require = createRequire(join(root, 'package.json'));
  return {
    name: 'edgeward-lazy-packages',
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.kind !== 'dynamic-import' || args.path.startsWith('node:')) return undefined;
        const name = packageName(args.path);
        if (external.includes(name)) return undefined;
        let pkgPath: string;
        try {
          pkgPath = require.resolve(`${name}/package.json`);
        } catch {
          return undefined; // a builtin without `node:`, or no readable package.json: esbuild decides
        }
        const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as PackageJson;
        if (args.path === name && pkg.exports === undefined && typeof pkg.module === 'string')
          return { path: join(dirname(pkgPath), pkg.module) };
        const resolved = await build.resolve(args.path, {
          kind: 'import-statement',
          resolveDir: args.resolveDir,
          importer: args.importer,
        });
        if (resolved.errors.length > 0) return { errors: resolved.errors };
        if (resolved.external || !isCommonJsFile(resolved.path)) return undefined;
        return { path: args.path, namespace: NAMESPACE };
      });
      build.onLoad({ filter: /.*/, namespace: NAMESPACE }, (args) => {
        const names = commonJsExportNames(require(args.path));
        if (names.length === 0)
          return { errors: [{ text: `${args.path}: no named CommonJS exports to re-export` }] };
        const spec = JSON.stringify(args.path);
        return { contents: `export { ${names.join(', ')} } from ${spec};`, resolveDir: root };
      });
    },
  };
}
