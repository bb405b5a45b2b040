/**
 * `npm run build:gateway`: the flashable directory runs with plain node and no network (a fresh
 * network namespace via `unshare -rn` where the kernel allows it), ships only the prebuilds the
 * gateways need, loads classic-level's native binding from them, validates its default config,
 * and its systemd unit carries the hardening and restart policy. The bundle is split into chunks
 * loaded on demand: `agent --dev` runs from it (the lazily loaded simulator, @peculiar/x509 and
 * level, whose named exports esbuild's splitting alone would lose) and serves the Workload API
 * (koffi's shipped native module for SO_PEERCRED, workload.proto beside the chunks): an SVID is
 * fetched from the running bundle. koffi's native modules for arm64, arm (armhf) and x64 are
 * shipped, each an ELF for its machine (those not installed here come from `npm pack`, so the
 * first build needs the registry or npm's cache).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildGateway, type GatewayBuild } from '../../firmware-hooks/build/gateway.ts';
import { elfMachine, nativeModules } from '../../firmware-hooks/build/koffi.ts';
import { writeState } from '../../firmware-hooks/ota-state.ts';
import { fetchX509Once } from '../../runtime/workload/client.ts';

let out: string;
let build: GatewayBuild;
const offline = spawnSync('unshare', ['-rn', 'true']).status === 0;

function edgeward(cwd: string, ...args: string[]): { code: number; stdout: string; stderr: string } {
  const node = process.execPath;
  const cmd = offline ? 'unshare' : node;
  const argv = offline ? ['-rn', node, 'edgeward.mjs', ...args] : ['edgeward.mjs', ...args];
  // No inherited environment: no proxy, no NODE_OPTIONS (tsx), no node_modules of this project.
  const r = spawnSync(cmd, argv, { cwd, env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test.before(async () => {
  out = await mkdtemp(join(tmpdir(), 'edgeward-build-'));
  build = await buildGateway(out);
});

test.after(async () => {
  await rm(out, { recursive: true, force: true });
});

test('the directory holds the bundle, the unit, the config, the hooks and only the wanted prebuilds', () => {
  for (const f of ['edgeward.mjs', 'edgeward.service', 'agent.yaml', 'package.json', 'README.md'])
    assert.ok(existsSync(join(build.dir, f)), f);
  assert.ok(existsSync(join(build.dir, 'hooks/mender/ArtifactCommit_Enter_50_edgeward')));
  const prebuilds = readdirSync(join(build.dir, 'node_modules/classic-level/prebuilds')).sort();
  assert.equal(prebuilds, ['linux-arm', 'linux-arm64', 'linux-x64']);
  const modules = readdirSync(join(build.dir, 'node_modules'));
  for (const dev of ['typescript', 'tsx', '@biomejs', 'uvu', 'fast-check', 'esbuild'])
    assert.not.ok(modules.includes(dev), `${dev} is not shipped`);
  assert.ok(build.bytes > 100_000 && build.bytes < 20 * 1024 * 1024, `tarball ${build.bytes} bytes`);
  const koffi = join(build.dir, 'node_modules/@koromix');
  assert.equal(readdirSync(koffi).sort(), ['koffi-linux-arm', 'koffi-linux-arm64', 'koffi-linux-x64']);
  const machines = (pkg: string) =>
    [...nativeModules(join(koffi, pkg))].map(([d, f]) => `${d}:${elfMachine(f)}`).sort();
  assert.equal(machines('koffi-linux-arm64'), ['linux_arm64:183', 'musl_arm64:183']);
  assert.equal(machines('koffi-linux-arm'), ['linux_armhf:40']);
  assert.equal(machines('koffi-linux-x64'), ['linux_x64:62', 'musl_x64:62']);
  assert.not.ok(existsSync(join(build.dir, 'node_modules/koffi/src/koffi/src/call.cc')), 'no C++ sources');
  const listed = execFileSync('tar', ['-tzf', build.tarball], { encoding: 'utf8' });
  assert.match(listed, /edgeward\/edgeward\.mjs/);
});

test('systemd unit: hardening options and restart policy', () => {
  const unit = readFileSync(join(build.dir, 'edgeward.service'), 'utf8');
  for (const line of [
    'Restart=on-failure',
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
    'ProtectHome=yes',
    'PrivateTmp=yes',
    'DevicePolicy=closed',
    'DeviceAllow=/dev/tpmrm0 rw',
    'CapabilityBoundingSet=CAP_SYS_PTRACE',
    'RuntimeDirectoryMode=0755',
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6',
    'UMask=0077',
  ])
    assert.ok(unit.split('\n').includes(line), line);
  assert.match(
    unit,
    /ExecStart=\/usr\/bin\/node (--[\w-]+(=\S+)? )*\/opt\/edgeward\/edgeward\.mjs agent --config/,
  );
});

test(`runs with plain node${offline ? ' in a namespace without network' : ''}: --help, hook --help, config check`, () => {
  const help = edgeward(build.dir, '--help');
  assert.is(help.code, 0, help.stderr);
  assert.match(help.stdout, /Usage: edgeward <command>/);
  const hook = edgeward(build.dir, 'hook', '--help');
  assert.is(hook.code, 0, hook.stderr);
  assert.match(hook.stdout, /21 {2}not ready yet/);
  const cfg = edgeward(build.dir, 'config', 'check', '--role', 'agent', 'agent.yaml');
  assert.is(cfg.code, 0, cfg.stderr);
});

test('the split bundle runs the agent on the embedded default (simulator, issuer, level), serves the Workload API, and stops on SIGTERM', async () => {
  assert.ok(
    readdirSync(join(build.dir, 'lib')).some((f) => f.endsWith('.mjs')),
    'chunks in lib/',
  );
  const data = join(out, 'dev');
  const child = spawn(
    process.execPath,
    ['edgeward.mjs', 'agent', '--dev', '--data-dir', data, '--mqtt-port', '0', '--enroll-port', '0'],
    { cwd: build.dir, env: { PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const serving = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (/"enrollment":\{"host"/.test(stdout)) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  // The Workload API of the bundled agent: dev mode's entry `dev` is this uid (the agent's).
  const fetched = serving
    ? await fetchX509Once(join(data, 'workload.sock')).catch((e: Error) => e)
    : new Error('not serving');
  child.kill('SIGTERM');
  const code = await exited;
  assert.ok(serving, `agent --dev did not serve:\n${stdout}\n${stderr}`);
  assert.not.instance(fetched, Error, `${(fetched as Error).message}\n${stdout}`);
  assert.match((fetched as { svids: { spiffeId: string }[] }).svids[0]?.spiffeId ?? '', /\/workload\/dev$/);
  assert.not.match(stdout, /"event":"workload.failed"/);
  assert.is(code, 0, stderr);
  assert.match(stdout, /"event":"identity.rotated"/);
});

test('the bundled hooks load classic-level from the shipped prebuild', async () => {
  const stateDir = join(out, 'data', 'ota');
  await writeState(stateDir, {
    format: 'edgeward-ota/1',
    phase: 'failed',
    version: '2.0',
    manifest: '{}',
    updatedAt: 0,
  });
  // No store exists: a typed ERR_HOOK_STORE from classic-level's open, not a missing module.
  const r = edgeward(build.dir, 'hook', 'rollback', '--state-dir', stateDir);
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, /ERR_HOOK_STORE/);
});

test.run();
