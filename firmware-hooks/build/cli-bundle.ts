/**
 * The esbuild options of an edgeward CLI bundle, shared by the gateway image
 * (`firmware-hooks/build/gateway.ts`) and the issuer's container image (`deploy/image/build.ts`):
 * `runtime/cli/bin.ts` as `edgeward.mjs` (ESM, Node 20, minified, no source maps), split at each
 * lazy `import()` into `lib/`, the `external` packages left out (shipped beside it, or loaded
 * lazily when present), and `require` defined for the CommonJS dependencies bundled into ESM
 * (from `lib/` it still finds the shipped `node_modules/` one directory up).
 *
 * @example
 * ```ts
 * await esbuild.build(cliBundleOptions(ROOT, join(ROOT, 'dist/gateway'), EXTERNAL));
 * ```
 */
import { join } from 'node:path';
import type { BuildOptions } from 'esbuild';
import { lazyPackages } from './lazy-packages.ts';

export function cliBundleOptions(root: string, outdir: string, external: string[]): BuildOptions {
  return {
    entryPoints: { edgeward: join(root, 'runtime/cli/bin.ts') },
    outdir,
    outExtension: { '.js': '.mjs' },
    splitting: true,
    chunkNames: 'lib/[name]-[hash]',
    plugins: [lazyPackages(root, external)],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minify: true,
    legalComments: 'linked',
    external,
    logLevel: 'error',
    absWorkingDir: root,
    banner: {
      js: "import { createRequire as __edgewardRequire } from 'node:module'; const require = __edgewardRequire(import.meta.url);",
    },
  };
}
