/**
 * `npm run build:gateway`: the directory to flash into a gateway image, and its tarball.
 *
 * `dist/gateway/edgeward/` holds:
 * - `edgeward.mjs` and `lib/*.mjs`: the CLI and every capability bundled by esbuild (ESM, Node 20,
 *   no source maps), split into chunks at each lazy `import()`: the running agent parses and keeps
 *   only the code it loads (the issuer, the simulator, @peculiar/x509, TypeBox, the bridge's MQTT
 *   client and the other commands stay on disk). One unsplit file measured 59–67 MB of idle RSS
 *   (bimodal), split 57.5 MB (`npm run bench agent`). Lazily imported CommonJS packages keep their
 *   named exports through `lazy-packages.ts`;
 * - `node_modules/`: only what cannot be bundled — `classic-level` (native LevelDB) and its
 *   production dependencies, with the prebuilds for linux-arm64 and linux-arm (and linux-x64 for
 *   x86 gateways and CI) and no others; `koffi` (the Workload API's SO_PEERCRED) with its native
 *   modules for the same three (koffi.ts: fetched by `npm pack` when not installed, checked
 *   against package-lock.json);
 * - `lib/workload.proto` beside the chunks (the Workload API's service, loaded at run time);
 * - `edgeward.service` (systemd: hardening and restart policy), `agent.yaml` (default config),
 *   `hooks/` (the OTA adapter scripts and their README), `package.json` (`type: module`).
 * Nothing in it fetches anything: `node edgeward.mjs --help` runs without a network.
 *
 * The tarball `dist/gateway/edgeward-gateway.tar.gz` is printed with its size.
 */
import { execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HookError } from '../errors.ts';
import { cliBundleOptions } from './cli-bundle.ts';
import { shipKoffi } from './koffi.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HERE = fileURLToPath(new URL('.', import.meta.url));
const PREBUILDS = ['linux-arm64', 'linux-arm', 'linux-x64'];
/** Native or optional packages that stay outside the bundle. */
const EXTERNAL = ['classic-level', 'cbor-extract', 'koffi'];
const SHIPPED = ['classic-level'];

export interface GatewayBuild {
  readonly dir: string;
  readonly tarball: string;
  readonly bytes: number;
  readonly dirBytes: number;
}

function sizeOf(path: string): number {
  const s = statSync(path);
  if (!s.isDirectory()) return s.size;
  return readdirSync(path).reduce((n, f) => n + sizeOf(join(path, f)), 0);
}

/** Copy `name` and its production dependencies (recursively) from the project's node_modules. */
export function copyPackage(name: string, outModules: string, seen: Set<string>): void {
  if (seen.has(name)) return;
  seen.add(name);
  const req = createRequire(join(ROOT, 'package.json'));
  const pkgJson = req.resolve(`${name}/package.json`);
  const src = dirname(pkgJson);
  const dest = join(outModules, name);
  cpSync(src, dest, {
    recursive: true,
    filter: (p) => {
      const rel = relative(src, p);
      if (rel.startsWith('prebuilds/') && !PREBUILDS.some((b) => rel.startsWith(`prebuilds/${b}`)))
        return false;
      return !/(^|\/)(test|tests|deps|src|binding\.gyp|\.github)(\/|$)/.test(rel) && !rel.endsWith('.md');
    },
  });
  const pkg = JSON.parse(readFileSync(pkgJson, 'utf8')) as { dependencies?: Record<string, string> };
  for (const dep of Object.keys(pkg.dependencies ?? {})) copyPackage(dep, outModules, seen);
}

export async function buildGateway(outRoot = join(ROOT, 'dist', 'gateway')): Promise<GatewayBuild> {
  const dir = join(outRoot, 'edgeward');
  rmSync(outRoot, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const esbuild = await import('esbuild');
  try {
    await esbuild.build(cliBundleOptions(ROOT, dir, EXTERNAL));
  } catch (cause) {
    throw new HookError('ERR_BUILD_FAILED', `bundling failed: ${(cause as Error).message}`, {}, { cause });
  }
  const modules = join(dir, 'node_modules');
  const seen = new Set<string>();
  for (const name of SHIPPED) copyPackage(name, modules, seen);
  for (const b of PREBUILDS)
    if (!existsSync(join(modules, 'classic-level/prebuilds', b)))
      throw new HookError('ERR_BUILD_FAILED', `classic-level has no prebuild for ${b}`);
  shipKoffi(ROOT, modules, PREBUILDS);
  // proto.ts reads workload.proto beside the module that loads it: in the bundle, a chunk of lib/.
  cpSync(join(ROOT, 'runtime/workload/workload.proto'), join(dir, 'lib', 'workload.proto'));
  cpSync(join(HERE, 'edgeward.service'), join(dir, 'edgeward.service'));
  cpSync(join(HERE, 'agent.yaml'), join(dir, 'agent.yaml'));
  mkdirSync(join(dir, 'hooks'));
  for (const f of readdirSync(join(HERE, '..', 'adapters')))
    cpSync(join(HERE, '..', 'adapters', f), join(dir, 'hooks', f), { recursive: true });
  cpSync(join(HERE, '..', 'README.md'), join(dir, 'README.md'));
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string })
    .version;
  writeFileSync(
    join(dir, 'package.json'),
    `${JSON.stringify({ name: 'edgeward-gateway', version, type: 'module', private: true }, null, 2)}\n`,
  );
  const tarball = join(outRoot, 'edgeward-gateway.tar.gz');
  try {
    execFileSync('tar', ['-czf', tarball, '-C', outRoot, '--owner=0', '--group=0', 'edgeward']);
  } catch (cause) {
    throw new HookError('ERR_BUILD_FAILED', 'tar failed', {}, { cause });
  }
  return { dir, tarball, bytes: statSync(tarball).size, dirBytes: sizeOf(dir) };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = await buildGateway();
  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(2)} MB`;
  console.log(`gateway build: ${relative(ROOT, out.dir)} (${mb(out.dirBytes)})`);
  console.log(`tarball: ${relative(ROOT, out.tarball)} ${mb(out.bytes)} (${out.bytes} bytes)`);
}
