/**
 * The OTA adapters run as their tools run them: Mender state scripts (no arguments, exit 21 =
 * retry later), RAUC's hook (`$1` = hook name, RAUC_SLOT_CLASS, RAUC_BUNDLE_MOUNT_POINT; 10 =
 * reject the bundle at install-check) and mark-good service, SWUpdate's shellscript handler
 * (`preinst` / `postinst` / `postfailure`) and boot confirmation — with `edgeward` on PATH being
 * our CLI, on a real gateway state (the TypeScript simulator served as a device, the real issuer,
 * an agent config without a PCR policy). Only the system tools around them are stand-ins that
 * record their calls: `systemctl`, `rauc`, `fw_setenv`.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { seededRandom } from '../../sim/random.ts';
import {
  edgeward,
  gatewayConfig,
  gatewaySerial,
  ROOT,
  type Run,
  runProcess,
  simTpm,
  startAgent,
  type World,
  world,
} from './helpers/ota-world.ts';

const ADAPTERS = join(ROOT, 'firmware-hooks/adapters');
let dir: string;
let w: World;
let cfg: { file: string; dataDir: string };
let bin: string;
let log: string;
const random = seededRandom('adapters');

function script(path: string, args: string[] = [], env: Record<string, string> = {}): Promise<Run> {
  return runProcess(join(ADAPTERS, path), args, {
    PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    HOME: process.env.HOME ?? '/tmp',
    EDGEWARD_HOOKS: ADAPTERS,
    EDGEWARD_HOOKS_ENV: join(dir, 'no-hooks.env'),
    EDGEWARD_CONFIG: cfg.file,
    EDGEWARD_FIRMWARE_KEYS: w.vendorPub,
    EDGEWARD_RETRY_TRIES: '1',
    EDGEWARD_RETRY_INTERVAL: '0',
    SHIM_LOG: log,
    ...env,
  });
}

async function calls(): Promise<string[]> {
  const text = await readFile(log, 'utf8').catch(() => '');
  await writeFile(log, '');
  return text.split('\n').filter((l) => l !== '');
}

const phase = async (): Promise<string> =>
  (await edgeward(['hook', 'agent-gate', '--config', cfg.file])).stdout.trim();

async function manifestFile(version: string, firmware: string, key = w.vendorKey): Promise<string> {
  const file = join(dir, `manifest-${version}-${firmware}.json`);
  await writeFile(file, w.manifest(version, firmware, key));
  return file;
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'edgeward-adapters-'));
  bin = join(dir, 'bin');
  log = join(dir, 'calls.log');
  await mkdir(bin);
  // `edgeward` on PATH is our CLI; the system tools record their calls.
  await writeFile(
    join(bin, 'edgeward'),
    `#!/bin/sh\nexec "${process.execPath}" --import tsx "${join(ROOT, 'runtime/cli/bin.ts')}" "$@"\n`,
  );
  for (const tool of ['systemctl', 'rauc', 'fw_setenv'])
    await writeFile(join(bin, tool), `#!/bin/sh\necho "${tool} $*" >> "$SHIM_LOG"\n`);
  for (const f of ['edgeward', 'systemctl', 'rauc', 'fw_setenv']) await chmod(join(bin, f), 0o755);
  w = await world(await simTpm(dir), dir);
  cfg = await gatewayConfig(w, 'gw');
  await w.tpm.boot('fw-1.0');
  await w.publish(w.manifest('1.0', 'fw-1.0'));
  const agent = await startAgent(cfg.file); // first boot: the identity of firmware 1.0
  await agent.stop();
});

test.after(async () => {
  await w?.close();
  await w?.tpm.close();
  await rm(dir, { recursive: true, force: true });
});

test('Mender: install, reboot, issuer down → ArtifactCommit_Enter 21 (retry later), up again → 0', async () => {
  const before = await gatewaySerial(w, cfg.dataDir, random);
  const foreign = await manifestFile('2.0', 'fw-2.0', w.otherKey);
  const refused = await script('mender/ArtifactInstall_Enter_50_edgeward', [], {
    EDGEWARD_MANIFEST: foreign,
  });
  assert.is(refused.code, 3, 'Mender aborts the artifact');
  assert.match(refused.stderr, /ERR_HOOK_MANIFEST_REFUSED/);
  const m = await manifestFile('2.0', 'fw-2.0');
  const enter = await script('mender/ArtifactInstall_Enter_50_edgeward', [], { EDGEWARD_MANIFEST: m });
  assert.is(enter.code, 0, enter.stderr);
  await calls();
  const leave = await script('mender/ArtifactInstall_Leave_50_edgeward');
  assert.is(leave.code, 0, leave.stderr);
  assert.equal(await calls(), ['systemctl stop edgeward.service', 'systemctl start edgeward.service']);
  assert.match(await phase(), /waits for post-boot/);

  await w.tpm.boot('fw-2.0');
  await w.issuerDown();
  const retry = await script('mender/ArtifactCommit_Enter_50_edgeward');
  assert.is(retry.code, 21, retry.stderr);
  assert.match(retry.stderr, /ERR_HOOK_ISSUER_UNREACHABLE/);
  assert.match(await phase(), /waits for post-boot/, 'nothing decided: still installed');
  await w.issuerUp();
  const commit = await script('mender/ArtifactCommit_Enter_50_edgeward');
  assert.is(commit.code, 0, commit.stderr);
  assert.match(await phase(), /no update in flight/);
  assert.is.not(await gatewaySerial(w, cfg.dataDir, random), before, 'a new SVID after the update');
});

test('Mender: firmware that measures differently → ArtifactCommit_Enter 1, ArtifactRollback_Leave restores', async () => {
  const before = await gatewaySerial(w, cfg.dataDir, random);
  const m = await manifestFile('3.0', 'fw-3.0');
  assert.is((await script('mender/ArtifactInstall_Enter_50_edgeward', [], { EDGEWARD_MANIFEST: m })).code, 0);
  assert.is((await script('mender/ArtifactInstall_Leave_50_edgeward')).code, 0);
  await w.tpm.boot('fw-3.0-tampered');
  const gate = await script('mender/ArtifactCommit_Enter_50_edgeward');
  assert.is(gate.code, 1, 'Mender must not commit');
  assert.match(gate.stderr, /ERR_HOOK_PCR_MISMATCH/);
  assert.match(await phase(), /failed post-boot/);
  const rb = await script('mender/ArtifactRollback_Leave_50_edgeward');
  assert.is(rb.code, 0, rb.stderr);
  await w.tpm.boot('fw-2.0');
  assert.is(await gatewaySerial(w, cfg.dataDir, random), before, 'the previous identity is back');
  assert.match(await phase(), /no update in flight/);
});

test('RAUC: install-check rejects (10) a foreign manifest; slot hook only for rootfs; mark-good after post-boot', async () => {
  const bundle = join(dir, 'bundle');
  await mkdir(bundle);
  await writeFile(join(bundle, 'edgeward-manifest.json'), w.manifest('4.0', 'fw-4.0', w.otherKey));
  const env = { RAUC_BUNDLE_MOUNT_POINT: bundle };
  const rejected = await script('rauc/edgeward-rauc-hook.sh', ['install-check'], env);
  assert.is(rejected.code, 10, rejected.stderr);
  await writeFile(join(bundle, 'edgeward-manifest.json'), w.manifest('4.0', 'fw-4.0'));
  assert.is((await script('rauc/edgeward-rauc-hook.sh', ['install-check'], env)).code, 0);
  const appfs = await script('rauc/edgeward-rauc-hook.sh', ['slot-post-install'], {
    RAUC_SLOT_CLASS: 'appfs',
  });
  assert.is(appfs.code, 0);
  assert.match(await phase(), /update 4\.0 is verified/, 'no post-install for another slot class');
  await calls();
  const rootfs = await script('rauc/edgeward-rauc-hook.sh', ['slot-post-install'], {
    RAUC_SLOT_CLASS: 'rootfs',
    RAUC_SLOT_MOUNT_POINT: join(dir, 'slot'),
  });
  assert.is(rootfs.code, 0, rootfs.stderr);
  assert.equal(await calls(), ['systemctl stop edgeward.service', 'systemctl start edgeward.service']);
  await w.tpm.boot('fw-4.0');
  const good = await script('rauc/edgeward-rauc-mark-good.sh');
  assert.is(good.code, 0, good.stderr);
  assert.equal(await calls(), ['rauc status mark-good booted']);
  assert.match(await phase(), /no update in flight/);
});

test('SWUpdate: preinst/postinst; a bad boot rolls back and reboots; postfailure rolls back', async () => {
  const before = await gatewaySerial(w, cfg.dataDir, random);
  const tmp = join(dir, 'swu');
  await mkdir(tmp);
  await writeFile(join(tmp, 'edgeward-manifest.json'), w.manifest('5.0', 'fw-5.0'));
  assert.is((await script('swupdate/edgeward-swupdate.sh', ['preinst'], { TMPDIR: tmp })).code, 0);
  assert.is((await script('swupdate/edgeward-swupdate.sh', ['postinst'])).code, 0);
  await calls();
  await w.tpm.boot('fw-5.0-tampered');
  const boot = await script('swupdate/edgeward-swupdate-boot.sh');
  assert.is(boot.code, 0, boot.stderr);
  assert.equal(await calls(), ['systemctl reboot'], 'no fw_setenv ustate 0: the update is not confirmed');
  await w.tpm.boot('fw-4.0');
  assert.is(await gatewaySerial(w, cfg.dataDir, random), before);

  await writeFile(join(tmp, 'edgeward-manifest.json'), w.manifest('6.0', 'fw-6.0'));
  assert.is((await script('swupdate/edgeward-swupdate.sh', ['preinst'], { TMPDIR: tmp })).code, 0);
  assert.is((await script('swupdate/edgeward-swupdate.sh', ['postinst'])).code, 0);
  const failed = await script('swupdate/edgeward-swupdate.sh', ['postfailure']);
  assert.is(failed.code, 0, failed.stderr);
  assert.match(await phase(), /no update in flight/);
  assert.is(await gatewaySerial(w, cfg.dataDir, random), before);
  await calls();
  await writeFile(join(tmp, 'edgeward-manifest.json'), w.manifest('7.0', 'fw-7.0'));
  assert.is((await script('swupdate/edgeward-swupdate.sh', ['preinst'], { TMPDIR: tmp })).code, 0);
  assert.is((await script('swupdate/edgeward-swupdate.sh', ['postinst'])).code, 0);
  await w.tpm.boot('fw-7.0');
  const ok = await script('swupdate/edgeward-swupdate-boot.sh');
  assert.is(ok.code, 0, ok.stderr);
  assert.ok((await calls()).includes('fw_setenv ustate 0'), 'the update is confirmed');
});

test.run();
