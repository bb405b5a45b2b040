/**
 * `npm run build:issuer`: what the issuer's container image ships (`deploy/Containerfile` copies
 * it to `/app`), built the way the gateway bundle is (`firmware-hooks/build/gateway.ts`).
 *
 * `dist/issuer/` holds:
 * - `edgeward.mjs` and `lib/*.mjs`: the CLI bundled by esbuild (ESM, Node 20, no source maps),
 *   split at each lazy `import()`, so `edgeward issuer` loads the issuer's code and not the agent's;
 * - `node_modules/`: only what cannot be bundled — `classic-level` (native LevelDB, which the
 *   issuer's store code loads even when it runs on PostgreSQL) and its production dependencies,
 *   with the prebuilds for linux-x64 and linux-arm64 (and linux-arm);
 * - `node_modules/pkcs11js`: the optional PKCS#11 binding for a `pkcs11:` CA key, when
 *   `npm install` built it here (`PKCS11JS_FILES`: the compiled addon and its loader only); the
 *   image gets it from the Containerfile's `pkcs11` stage, compiled for the target platform;
 * - `bin/edgeward`: the command on the image's PATH (`kubectl exec POD -- edgeward issuer ...`),
 *   a CommonJS launcher that imports `../edgeward.mjs`; its `#!` line names the image's node
 *   (`--node PATH`, default the distroless image's `/nodejs/bin/node`);
 * - `install-secrets.mjs`: the init container's copy of mounted Secrets into a memory volume,
 *   owned by the issuer's user and mode 0600 (`deploy/image/install-secrets.mjs`).
 * Not shipped: npm, TypeScript, tests, source maps, the agent's native add-ons (koffi,
 * cbor-extract: cbor-x runs without it). Nothing in it fetches anything.
 */
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cliBundleOptions } from '../../firmware-hooks/build/cli-bundle.ts';
import { copyPackage } from '../../firmware-hooks/build/gateway.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HERE = fileURLToPath(new URL('.', import.meta.url));
/** Native or optional packages left out of the bundle; only SHIPPED are copied beside it. */
const EXTERNAL = ['classic-level', 'cbor-extract', 'koffi', 'pg-native', 'pkcs11js'];
const SHIPPED = ['classic-level'];
/**
 * What of the optional `pkcs11js` binding is shipped when it was built (for a `pkcs11:` CA key;
 * the Containerfile's `pkcs11` stage compiles it for the target platform): no sources, no objects.
 */
export const PKCS11JS_FILES = ['package.json', 'index.js', 'LICENSE', 'build/Release/pkcs11.node'];
const PREBUILDS = ['linux-x64', 'linux-arm64'];
/** Where node is in the runtime image (gcr.io/distroless/nodejs20-debian12). */
export const IMAGE_NODE = '/nodejs/bin/node';

export interface IssuerBuild {
  readonly dir: string;
  readonly bytes: number;
  /** Whether the pkcs11js binding was shipped (it is built here: `npm install` compiled it). */
  readonly pkcs11js: boolean;
  /** The project's top-level folders the bundle was built from (what the Containerfile copies). */
  readonly sourceFolders: readonly string[];
}

function sizeOf(path: string): number {
  const s = statSync(path);
  if (!s.isDirectory()) return s.size;
  return readdirSync(path).reduce((n, f) => n + sizeOf(join(path, f)), 0);
}

export async function buildIssuer(o: { out?: string; node?: string } = {}): Promise<IssuerBuild> {
  const dir = o.out ?? join(ROOT, 'dist', 'issuer');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const esbuild = await import('esbuild');
  const built = await esbuild.build({ ...cliBundleOptions(ROOT, dir, EXTERNAL), metafile: true });
  const seen = new Set<string>();
  for (const name of SHIPPED) copyPackage(name, join(dir, 'node_modules'), seen);
  for (const b of PREBUILDS)
    if (!existsSync(join(dir, 'node_modules/classic-level/prebuilds', b)))
      throw new Error(`classic-level has no prebuild for ${b}`);
  const binding = join(ROOT, 'node_modules', 'pkcs11js');
  const pkcs11js = PKCS11JS_FILES.every((f) => existsSync(join(binding, f)));
  if (pkcs11js)
    for (const f of PKCS11JS_FILES) cpSync(join(binding, f), join(dir, 'node_modules', 'pkcs11js', f));
  mkdirSync(join(dir, 'bin'));
  // CommonJS (no package.json says otherwise), so an extensionless file runs under any Node 20.
  writeFileSync(
    join(dir, 'bin', 'edgeward'),
    `#!${o.node ?? IMAGE_NODE}\n'use strict';\n// edgeward: the bundled CLI one directory up.\nimport(require('node:url').pathToFileURL(require('node:path').join(__dirname, '..', 'edgeward.mjs')).href);\n`,
  );
  chmodSync(join(dir, 'bin', 'edgeward'), 0o755);
  cpSync(join(HERE, 'install-secrets.mjs'), join(dir, 'install-secrets.mjs'));
  const sourceFolders = new Set(
    Object.keys(built.metafile.inputs)
      // Packages: node_modules/..., or ../... where node_modules is a link out of the project.
      .filter((f) => !f.startsWith('node_modules/') && !f.startsWith('../') && !f.includes(':'))
      .map((f) => f.split('/')[0] as string),
  );
  return { dir, bytes: sizeOf(dir), pkcs11js, sourceFolders: [...sourceFolders].sort() };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { out: { type: 'string' }, node: { type: 'string' } } });
  const out = await buildIssuer({
    ...(values.out === undefined ? {} : { out: values.out }),
    ...(values.node === undefined ? {} : { node: values.node }),
  });
  console.log(
    `issuer build: ${relative(ROOT, out.dir) || out.dir} (${(out.bytes / 1024 / 1024).toFixed(2)} MB)`,
  );
}
