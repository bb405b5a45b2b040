#!/usr/bin/env node
// `npm test`: check the real peers are installed (installing them as root with apt-get),
// then Biome, the type check and every test file, each file in its own process.
// The last line is always `N passed, N failed`.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = new URL('..', import.meta.url).pathname;
const PACKAGES = 'swtpm swtpm-tools tpm2-tools mosquitto mosquitto-clients faketime';
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
];
const FILE_TIMEOUT_MS = Number(process.env.EDGEWARD_TEST_TIMEOUT_MS ?? 240_000);
const JOBS = Number(process.env.EDGEWARD_TEST_JOBS ?? 2);

const onPath = (cmd) =>
  ['/usr/sbin', '/usr/bin', '/sbin', '/bin', ...(process.env.PATH ?? '').split(':')].some(
    (d) => d && existsSync(join(d, cmd)),
  );

function ensurePeers() {
  let missing = NEEDED.filter((c) => !onPath(c));
  if (missing.length === 0) return;
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !onPath('apt-get')) {
    console.error(`npm test needs ${missing.join(', ')}: run \`sudo apt-get install -y ${PACKAGES}\``);
    process.exit(1);
  }
  console.log(`installing ${PACKAGES} (missing: ${missing.join(', ')})`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  const r = spawnSync('apt-get', ['install', '-y', '-qq', ...PACKAGES.split(' ')], { stdio: 'inherit', env });
  missing = NEEDED.filter((c) => !onPath(c));
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

function testFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...testFiles(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
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
      let failed = Math.max(0, total - passed - skipped);
      if ((code !== 0 || total === 0) && failed === 0) failed = 1;
      resolve({ file, passed, failed, text, ms: Date.now() - started });
    });
  });
}

async function main() {
  ensurePeers();
  let passed = 0;
  let failed = 0;
  const only = process.argv.slice(2);
  if (only.length === 0) {
    for (const [name, cmd, args] of [
      ['biome check', 'npx', ['biome', 'check', '.']],
      ['tsc --noEmit', 'npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']],
    ]) {
      if (step(name, cmd, args)) passed++;
      else failed++;
    }
  }
  const files = testFiles(join(ROOT, 'test')).filter(
    (f) => only.length === 0 || only.some((o) => f.includes(o)),
  );
  const queue = [...files];
  const results = [];
  await Promise.all(
    Array.from({ length: JOBS }, async () => {
      for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
        const r = await runFile(f);
        results.push(r);
        const rel = relative(ROOT, r.file);
        console.log(
          `${r.failed === 0 ? 'ok  ' : 'FAIL'} ${rel} (${r.passed} passed, ${r.failed} failed, ${(r.ms / 1000).toFixed(1)} s)`,
        );
        if (r.failed > 0) console.log(r.text.trim().split('\n').slice(-120).join('\n'));
      }
    }),
  );
  for (const r of results) {
    passed += r.passed;
    failed += r.failed;
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

await main();
