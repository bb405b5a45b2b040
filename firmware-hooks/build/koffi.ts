/**
 * koffi (the FFI behind the Workload API's SO_PEERCRED) beside the gateway bundle.
 *
 * koffi 3 keeps its JavaScript in the `koffi` package and each platform's native module in its
 * own optional package, `@koromix/koffi-<platform>-<arch>` (`linux_arm64/koffi.node`,
 * `linux_armhf/koffi.node`, `linux_x64/koffi.node`, and musl builds), which koffi's loader
 * requires by name (`require('@koromix/koffi-linux-arm64')`). npm installs only the build host's
 * one, so the others are fetched by the ordinary client (`npm pack <name>@<koffi's version>`, from
 * npm's cache when it has them) and must match the integrity package-lock.json records for them;
 * the build fails (`ERR_BUILD_FAILED`) when one cannot be had or does not match. Each native
 * module's ELF machine is checked against its platform.
 *
 * Shipped: `node_modules/koffi` (its package.json, licence and the ES module and CommonJS entry
 * files only, no C++ sources) and `node_modules/@koromix/koffi-<target>` for every target.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { HookError } from '../errors.ts';

/** The files of the koffi package the bundle needs at run time. */
const KOFFI_FILES = [
  'package.json',
  'LICENSE.txt',
  'index.js',
  'index.cjs',
  'src/koffi/index.js',
  'src/koffi/index.cjs',
  'src/koffi/src/static.js',
  'src/koffi/src/static.cjs',
];

/** ELF e_machine of each target's native module. */
const MACHINE: Record<string, number> = { 'linux-x64': 62, 'linux-arm64': 183, 'linux-arm': 40 };

const fail = (message: string, cause?: unknown): never => {
  throw new HookError('ERR_BUILD_FAILED', message, {}, cause === undefined ? {} : { cause });
};

/** Every `koffi.node` under `dir`, by its directory name (`linux_arm64`, `musl_arm64`, …). */
export function nativeModules(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of readdirSync(dir, { withFileTypes: true }))
    if (d.isDirectory() && existsSync(join(dir, d.name, 'koffi.node')))
      out.set(d.name, join(dir, d.name, 'koffi.node'));
  return out;
}

/** ELF e_machine of a shared object. */
export function elfMachine(file: string): number {
  const head = readFileSync(file).subarray(0, 20);
  if (head.length < 20 || head.readUInt32BE(0) !== 0x7f454c46) fail(`${file} is not an ELF file`);
  return head.readUInt16LE(18);
}

/**
 * The integrity package-lock.json records for `name` (`<sha256|sha384|sha512>-<base64>`); a lock
 * that does not parse, or records none or another form, is ERR_BUILD_FAILED.
 */
export function lockIntegrity(root: string, name: string): { algo: string; digest: string } {
  let lock: { packages?: Record<string, { integrity?: unknown } | undefined> };
  try {
    lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
  } catch (cause) {
    return fail('cannot read package-lock.json', cause);
  }
  const integrity = lock?.packages?.[`node_modules/${name}`]?.integrity;
  if (integrity === undefined) return fail(`package-lock.json records no integrity for ${name}`);
  const m =
    typeof integrity === 'string' ? /^(sha256|sha384|sha512)-([A-Za-z0-9+/]+=*)$/.exec(integrity) : null;
  if (m === null) return fail(`package-lock.json: malformed integrity for ${name}`);
  return { algo: m[1] as string, digest: m[2] as string };
}

/** `npm pack name@version` into a temp dir (npm's cache first); checked against the lock's integrity. */
function packTarball(root: string, name: string, version: string): string {
  const tmp = mkdtempSync(join(tmpdir(), 'edgeward-koffi-'));
  let file: string;
  try {
    const out = execFileSync(
      'npm',
      ['pack', `${name}@${version}`, '--prefer-offline', '--json', '--pack-destination', tmp],
      { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 },
    );
    const [info] = JSON.parse(out) as { filename: string }[];
    file = join(tmp, info?.filename ?? '');
  } catch (cause) {
    return fail(`cannot obtain ${name}@${version} (npm pack; offline and not in npm's cache?)`, cause);
  }
  const { algo, digest } = lockIntegrity(root, name);
  const got = createHash(algo).update(readFileSync(file)).digest('base64');
  if (got !== digest)
    fail(`${name}@${version}: tarball integrity ${algo}-${got} is not the lock's ${algo}-${digest}`);
  return file;
}

/** Copy koffi and its native module packages for `targets` into `modules` (a node_modules dir). */
export function shipKoffi(root: string, modules: string, targets: readonly string[]): void {
  const src = join(root, 'node_modules', 'koffi');
  const version = (JSON.parse(readFileSync(join(src, 'package.json'), 'utf8')) as { version: string })
    .version;
  for (const f of KOFFI_FILES) {
    const from = join(src, f);
    if (!existsSync(from)) fail(`koffi ${version} has no ${f} (its layout changed?)`);
    mkdirSync(dirname(join(modules, 'koffi', f)), { recursive: true });
    cpSync(from, join(modules, 'koffi', f));
  }
  for (const target of targets) {
    const name = `@koromix/koffi-${target}`;
    const dest = join(modules, name);
    const installed = join(root, 'node_modules', name);
    const installedVersion = existsSync(join(installed, 'package.json'))
      ? (JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { version: string }).version
      : undefined;
    mkdirSync(dest, { recursive: true });
    if (installedVersion === version) cpSync(installed, dest, { recursive: true });
    else {
      const tgz = packTarball(root, name, version);
      try {
        execFileSync('tar', ['-xzf', tgz, '-C', dest, '--strip-components=1', '--no-same-owner']);
      } catch (cause) {
        fail(`cannot unpack ${tgz}`, cause);
      } finally {
        rmSync(dirname(tgz), { recursive: true, force: true });
      }
    }
    const natives = nativeModules(dest);
    if (natives.size === 0) fail(`${name}@${version} holds no koffi.node`);
    for (const [dir, file] of natives)
      if (elfMachine(file) !== MACHINE[target]) fail(`${name}: ${dir}/koffi.node is not a ${target} binary`);
  }
}
