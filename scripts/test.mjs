#!/usr/bin/env node
// `npm test`: check the real peers are installed (installing them as root with apt-get),
// then the checks (Biome, the type check, the README formats, and the static suite checks of
// test-checks.mjs: no `.only`, every test asserts), then every test file, each in its own process.
// Checks print their own `ok  `/`FAIL` lines and are not counted as tests; a failed check makes
// the run exit 1. The last line is always `N passed, N failed, N skipped` (tests only, as uvu
// counts them; `N passed, N failed` is what CI reads).
// With arguments (substrings of test file paths) only those files run, and Biome and tsc are
// skipped; the README check still runs, and the static checks on the selected files.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { readmeWithCatalogue } from './error-codes.mjs';
import { checkSuite } from './test-checks.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
const PACKAGES =
  'swtpm swtpm-tools tpm2-tools mosquitto mosquitto-clients faketime postgresql python3-grpcio python3-grpc-tools kubernetes-client softhsm2';
const NEEDED = [
  'swtpm',
  'swtpm_setup',
  'swtpm_ioctl',
  'tpm2_checkquote',
  'tpm2_makecredential',
  'mosquitto',
  'mosquitto_pub',
  'mosquitto_sub',
  'openssl',
  'faketime',
  'kubectl',
  'softhsm2-util',
];
const FILE_TIMEOUT_MS = Number(process.env.EDGEWARD_TEST_TIMEOUT_MS ?? 240_000);
const JOBS = Number(process.env.EDGEWARD_TEST_JOBS ?? 2);

const onPath = (cmd) =>
  ['/usr/sbin', '/usr/bin', '/sbin', '/bin', ...(process.env.PATH ?? '').split(':')].some(
    (d) => d && existsSync(join(d, cmd)),
  );

// The Workload API peer tests' client: Debian's Python gRPC stack (python3-grpcio, grpc_tools).
const pythonGrpc = () =>
  spawnSync('/usr/bin/python3', ['-c', 'import grpc, grpc_tools.protoc'], { stdio: 'ignore' }).status === 0;

/** PostgreSQL's server binaries are not on PATH on Debian: /usr/lib/postgresql/<major>/bin. */
function postgresBin() {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  return readdirSync(root)
    .map((d) => join(root, d, 'bin'))
    .find((b) => existsSync(join(b, 'initdb')) && existsSync(join(b, 'postgres')));
}

const missingPeers = () => [
  ...NEEDED.filter((c) => !onPath(c)),
  ...(postgresBin() === undefined ? ['postgres (/usr/lib/postgresql/*/bin)'] : []),
  ...(pythonGrpc() ? [] : ['python3-grpcio/python3-grpc-tools']),
];

function ensurePeers() {
  let missing = missingPeers();
  if (missing.length === 0) return;
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !onPath('apt-get')) {
    console.error(`npm test needs ${missing.join(', ')}: run \`sudo apt-get install -y ${PACKAGES}\``);
    process.exit(1);
  }
  console.log(`installing ${PACKAGES} (missing: ${missing.join(', ')})`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  // A kubectl from elsewhere (a cloud SDK's package) owns /usr/bin/kubectl: Debian's would clash.
  const packages = PACKAGES.split(' ').filter((p) => p !== 'kubernetes-client' || !onPath('kubectl'));
  const r = spawnSync('apt-get', ['install', '-y', '-qq', ...packages], { stdio: 'inherit', env });
  missing = missingPeers();
  if (r.status !== 0 || missing.length > 0) {
    console.error(`could not install ${missing.join(', ')}: run \`apt-get install -y ${PACKAGES}\``);
    process.exit(1);
  }
}

function step(name, cmd, args) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8' });
  const ok = r.status === 0;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}`);
  if (!ok) console.log(`${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(0, 80).join('\n'));
  return ok;
}

function testFiles(dir, suffix = '.test.ts') {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...testFiles(p, suffix));
    else if (name.endsWith(suffix)) out.push(p);
  }
  return out;
}

/** README formats: the quick start is exactly the two commands; the error-code catalogue is current. */
function docsCheck() {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const problems = [];
  if (!/```sh\nnpm install && npm start\nnpm test\n```/.test(readme))
    problems.push('the quick start is not exactly `npm install && npm start` and `npm test`');
  try {
    if (readmeWithCatalogue(readme) !== readme)
      problems.push('the error-code catalogue is out of date: run `node scripts/error-codes.mjs --write`');
  } catch (err) {
    problems.push(err.message);
  }
  const name = 'docs: README quick start and error-code catalogue';
  console.log(`${problems.length === 0 ? 'ok  ' : 'FAIL'} ${name}`);
  for (const p of problems) console.log(`  ${p}`);
  return [name, problems.length === 0];
}

/** The static checks of test-checks.mjs, each printed as a check line. */
function staticChecks(files) {
  let found;
  try {
    found = checkSuite(files, ROOT);
  } catch (err) {
    console.log(`FAIL static test checks could not run: ${err.stack ?? err}`);
    return [false, false];
  }
  const { only, unasserted } = found;
  const report = (name, found, why) => {
    console.log(`${found.length === 0 ? 'ok  ' : 'FAIL'} ${name}`);
    if (found.length > 0) console.log(`${why}:\n${found.map((f) => `  ${f}`).join('\n')}`);
    return found.length === 0;
  };
  const a = report(
    'no .only in test/',
    only,
    'uvu would run only these tests and report the file as passing',
  );
  const b = report(
    'every test asserts',
    unasserted,
    'tests whose body calls no assertion (uvu/assert, rejects, or a helper that asserts; see scripts/test-checks.mjs)',
  );
  return [a, b];
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colours from uvu's output
const strip = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: ROOT,
      env: { ...process.env, FORCE_COLOR: '0' },
      detached: true,
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const kill = () => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    };
    const timer = setTimeout(() => {
      output += `\n[runner] killed after ${FILE_TIMEOUT_MS} ms`;
      kill();
    }, FILE_TIMEOUT_MS);
    let lingering;
    child.stdout.on('data', () => {
      if (lingering === undefined && /Duration:/.test(strip(output))) {
        // uvu has printed its totals: the file has 10 s to exit, or it leaked a handle.
        lingering = setTimeout(() => {
          output +=
            '\n[runner] the file did not exit 10 s after its tests finished (an open handle): counted as a failure';
          kill();
        }, 10_000);
      }
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      clearTimeout(lingering);
      const text = strip(output);
      const total = Number(/Total:\s+(\d+)/.exec(text)?.[1] ?? 0);
      const passed = Number(/Passed:\s+(\d+)/.exec(text)?.[1] ?? 0);
      const skipped = Number(/Skipped:\s+(\d+)/.exec(text)?.[1] ?? 0);
      // uvu's Total excludes skipped tests (and, with a .only, the ones it did not run).
      let failed = Math.max(0, total - passed);
      if ((code !== 0 || total + skipped === 0) && failed === 0) failed = 1;
      resolve({ file, passed, failed, skipped, text, ms: Date.now() - started });
    });
  });
}

/**
 * One throw-away PostgreSQL cluster for the run (test/helpers/postgres.ts `serve`), when a selected
 * file uses it; each file makes its own databases. Its info goes to the files in EDGEWARD_TEST_PG.
 * Stopped at the end by closing the holder's stdin (and by PID if the runner exits first).
 */
async function startPostgres(files) {
  if (!files.some((f) => readFileSync(f, 'utf8').includes('helpers/postgres.ts'))) return undefined;
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/postgres.ts', 'serve'], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const killIt = () => {
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {}
  };
  process.on('exit', killIt);
  const line = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    child.once('exit', (code) => reject(new Error(`the PostgreSQL cluster did not start (exit ${code})`)));
  });
  const info = JSON.parse(line);
  console.log(`PostgreSQL cluster for the run: pid ${info.pid}, socket in ${info.socketDir}`);
  process.env.EDGEWARD_TEST_PG = line;
  return async () => {
    process.off('exit', killIt);
    const gone = new Promise((r) => child.once('exit', r));
    child.stdin.end();
    await gone;
  };
}

async function main() {
  ensurePeers();
  // One seed for every file's test randomness (test/helpers/seed.ts), printed so a failure replays.
  const seed = process.env.EDGEWARD_TEST_SEED || randomBytes(6).toString('hex');
  process.env.EDGEWARD_TEST_SEED = seed;
  console.log(`test seed ${seed} (replay: EDGEWARD_TEST_SEED=${seed} npm test)`);
  const only = process.argv.slice(2);
  const checks = [];
  if (only.length === 0) {
    for (const [name, cmd, args] of [
      ['lint: biome check', 'npx', ['biome', 'check', '.']],
      ['types: tsc --noEmit', 'npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']],
    ])
      checks.push([name, step(name, cmd, args)]);
  }
  checks.push(docsCheck()); // milliseconds: also with a filter
  const files = testFiles(join(ROOT, 'test')).filter(
    (f) => only.length === 0 || only.some((o) => f.includes(o)),
  );
  // Unfiltered, the shared suites and helpers are checked too (a `.only` in a suite file counts).
  const [noOnly, asserts] = staticChecks(only.length === 0 ? testFiles(join(ROOT, 'test'), '.ts') : files);
  checks.push(['no .only', noOnly], ['every test asserts', asserts]);
  const stopPostgres = await startPostgres(files);
  const queue = [...files];
  const results = [];
  await Promise.all(
    Array.from({ length: JOBS }, async () => {
      for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
        const r = await runFile(f);
        results.push(r);
        const rel = relative(ROOT, r.file);
        const skips = r.skipped > 0 ? `, ${r.skipped} skipped` : '';
        console.log(
          `${r.failed === 0 ? 'ok  ' : 'FAIL'} ${rel} (${r.passed} passed, ${r.failed} failed${skips}, ${(r.ms / 1000).toFixed(1)} s)`,
        );
        if (r.failed > 0) {
          console.log(r.text.trim().split('\n').slice(-120).join('\n'));
          console.log(`replay: EDGEWARD_TEST_SEED=${seed} node --import tsx ${rel}`);
        }
      }
    }),
  );
  await stopPostgres?.();
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const r of results) {
    passed += r.passed;
    failed += r.failed;
    skipped += r.skipped;
  }
  const failedChecks = checks.filter(([, ok]) => !ok).map(([name]) => name);
  if (failedChecks.length > 0)
    console.log(`FAIL checks (not counted as tests, the run fails): ${failedChecks.join(', ')}`);
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  process.exitCode = failed === 0 && failedChecks.length === 0 ? 0 : 1;
}

await main();
