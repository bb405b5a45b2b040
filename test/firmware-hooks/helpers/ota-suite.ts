/**
 * TEST HELPER: the OTA cycle driven through the CLI (`edgeward hook <phase> --config FILE` in a
 * child process), against the real issuer and the real TpmAttestor on the TPM `makeTpm` gives
 * (swtpm, or the TypeScript simulator). One gateway lives through the whole file, as a gateway in
 * the field does: first boot on firmware 1.0, an update to 2.0 that succeeds, an update whose
 * firmware measures differently than its manifest promises (post-boot exit 4, rollback), a
 * forged manifest, and an update rolled back by the OTA tool.
 *
 * The agent config seals the store to PCRs 0 and 7 (`sealing.pcrPolicy`), so post-install seals
 * the data key to the values the signed manifest promises.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import { seededRandom } from '../../../sim/random.ts';
import { rejects } from '../../helpers/rejects.ts';
import {
  attestNow,
  edgeward,
  gatewayConfig,
  gatewaySerial,
  type Run,
  startAgent,
  type Tpm,
  type World,
  world,
} from './ota-world.ts';

export function otaSuite(suite: Test, makeTpm: (dir: string) => Promise<Tpm>): void {
  let dir: string;
  let w: World;
  let cfg: { file: string; dataDir: string };
  const random = seededRandom('ota-suite');

  const hook = (phase: string, ...extra: string[]): Promise<Run> =>
    edgeward([
      'hook',
      phase,
      '--config',
      cfg.file,
      ...(['pre-install', 'post-install', 'post-boot'].includes(phase)
        ? ['--firmware-key', w.vendorPub]
        : []),
      ...extra,
    ]);
  const ok = (r: Run, what: string): void => assert.is(r.code, 0, `${what}: ${r.stderr}${r.stdout}`);
  let manifests = 0;
  const writeManifest = async (text: string): Promise<string> => {
    const file = join(dir, `manifest-${manifests++}.json`);
    await writeFile(file, text);
    return file;
  };

  const storeSerial = (): Promise<string> => gatewaySerial(w, cfg.dataDir, random);

  suite.before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'edgeward-ota-'));
    w = await world(await makeTpm(dir), dir);
    cfg = await gatewayConfig(w, 'gw', { pcrPolicy: true });
    await w.tpm.boot('fw-1.0');
    await w.publish(w.manifest('1.0', 'fw-1.0'));
  });

  suite.after(async () => {
    await w?.close();
    await w?.tpm.close();
    await rm(dir, { recursive: true, force: true });
  });

  suite('first boot: the real agent attests; while it runs, a hook waits for the store lock and fails clearly', async () => {
    const agent = await startAgent(cfg.file);
    try {
      const pre = await hook('pre-install', '--manifest', await writeManifest(w.manifest('2.0', 'fw-2.0')));
      ok(pre, 'pre-install needs no store');
      const locked = await hook('post-install', '--lock-wait', '600ms');
      assert.is(locked.code, 1);
      assert.match(locked.stderr, /ERR_HOOK_STORE: .*locked by a running agent.*stop edgeward\.service/);
      assert.match((await hook('agent-gate')).stdout, /update 2\.0 is verified/);
    } finally {
      assert.is(await agent.stop(), 0, 'the agent stops cleanly on SIGTERM');
    }
    const rolled = await hook('rollback'); // the OTA tool abandons that update
    ok(rolled, 'rollback of a verified update');
    assert.match((await hook('agent-gate')).stdout, /no update in flight/);
  });

  suite('signed manifest: pre-install, post-install, reboot, post-boot re-attests, commit', async () => {
    // Every phase here names the OTA state directory itself (--state-dir with --config): all of
    // them must use it, the store-opening phases (post-install, post-boot) included.
    const sd = ['--state-dir', join(dir, 'ota-explicit')];
    const before = await storeSerial();
    ok(
      await hook('pre-install', ...sd, '--manifest', await writeManifest(w.manifest('2.0', 'fw-2.0'))),
      'pre-install',
    );
    ok(await hook('post-install', ...sd), 'post-install');
    const gate = await hook('agent-gate', ...sd);
    assert.is(gate.code, 1, 'the agent stays down until post-boot');
    // Mender runs ArtifactCommit_Enter only after the reboot; asked early it answers "retry later".
    const early = await hook('commit', ...sd);
    assert.is(early.code, 21, early.stderr);
    assert.match(early.stderr, /ERR_HOOK_NOT_READY/);
    // The store is sealed to the new firmware's values now: the old firmware no longer opens it.
    await rejects(() => storeSerial(), 'ERR_STORE_KEY');

    await w.tpm.boot('fw-2.0');
    const boot = await hook('post-boot', ...sd);
    ok(boot, 'post-boot');
    assert.match(boot.stdout, /identity spiffe:\/\/fleet\.example\/gateway\/tpm-[0-9a-f]{16} re-established/);
    const after = await storeSerial();
    assert.is.not(after, before, 'post-boot rotated the SVID');
    assert.ok(boot.stdout.includes(after), 'the serial printed is the one stored');
    assert.is((await hook('agent-gate', ...sd)).code, 0);
    ok(await hook('commit', ...sd), 'commit');
    assert.is(await storeSerial(), after);
    assert.match((await hook('agent-gate', ...sd)).stdout, /no update in flight/);
    // The issuer now accepts only 2.0 from this gateway: a downgrade to 1.0 no longer attests.
    await w.tpm.boot('fw-1.0');
    assert.is(await attestNow(w, random), 'ERR_ISSUER_PCR_MISMATCH');
    await w.tpm.boot('fw-2.0');
    assert.is(await attestNow(w, random), 'ok');
  });

  suite('firmware that measures differently: post-boot exit 4, the store stays shut, rollback restores', async () => {
    const before = await storeSerial();
    ok(
      await hook('pre-install', '--manifest', await writeManifest(w.manifest('3.0', 'fw-3.0'))),
      'pre-install',
    );
    ok(await hook('post-install'), 'post-install');
    await w.tpm.boot('fw-3.0-tampered');
    const boot = await hook('post-boot');
    assert.is(boot.code, 4, boot.stderr);
    assert.match(boot.stderr, /ERR_HOOK_PCR_MISMATCH/);
    await rejects(() => storeSerial(), 'ERR_STORE_KEY'); // sealed to what 3.0 promised
    assert.is((await hook('agent-gate')).code, 1, 'no agent start that would wipe the store');
    const refused = await hook('commit');
    assert.is(refused.code, 1);
    assert.match(refused.stderr, /ERR_HOOK_STATE/);
    ok(await hook('rollback'), 'rollback');
    await w.tpm.boot('fw-2.0'); // the bootloader falls back to the old slot
    assert.is(await storeSerial(), before, 'the old identity, opened by the old firmware');
    // The rollback retracted 3.0 for this gateway: even the genuine 3.0 build no longer attests.
    await w.tpm.boot('fw-3.0');
    assert.is(await attestNow(w, random), 'ERR_ISSUER_PCR_MISMATCH');
    await w.tpm.boot('fw-2.0');
    assert.is(await attestNow(w, random), 'ok');
  });

  suite('unsigned or foreign manifests are refused at pre-install (exit 3); post-boot without an update exits 4', async () => {
    const foreign = await hook(
      'pre-install',
      '--manifest',
      await writeManifest(w.manifest('4.0', 'fw-4.0', w.otherKey)),
    );
    assert.is(foreign.code, 3);
    assert.match(foreign.stderr, /ERR_HOOK_MANIFEST_REFUSED/);
    const stripped = JSON.stringify({ ...JSON.parse(w.manifest('4.0', 'fw-4.0')), signature: '' });
    assert.is((await hook('pre-install', '--manifest', await writeManifest(stripped))).code, 3);
    assert.is((await hook('pre-install')).code, 3, 'no manifest at all');
    const lone = await hook('post-boot');
    assert.is(lone.code, 4);
    assert.match(lone.stderr, /ERR_HOOK_STATE/);
    assert.match((await hook('agent-gate')).stdout, /no update in flight/);
  });

  suite('a manifest smuggled into the state file after pre-install fails post-boot; rollback restores', async () => {
    const before = await storeSerial();
    ok(
      await hook('pre-install', '--manifest', await writeManifest(w.manifest('5.0', 'fw-5.0'))),
      'pre-install',
    );
    ok(await hook('post-install'), 'post-install');
    const file = join(cfg.dataDir, 'ota', 'ota-state.json');
    const state = JSON.parse(await readFile(file, 'utf8'));
    await writeFile(file, JSON.stringify({ ...state, manifest: w.manifest('5.0', 'fw-5.0', w.otherKey) }), {
      mode: 0o600,
    });
    await w.tpm.boot('fw-5.0');
    const boot = await hook('post-boot');
    assert.is(boot.code, 4);
    assert.match(boot.stderr, /ERR_HOOK_MANIFEST_REFUSED/);
    ok(await hook('rollback'), 'rollback');
    await w.tpm.boot('fw-2.0');
    assert.is(await storeSerial(), before);
  });
}
