/**
 * `edgeward hook` through the CLI entry: the vendor's `manifest create` (values given, and read
 * from a real swtpm), signatures checked by openssl, and the exit codes the OTA tools act on.
 */
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openTransport } from '../../attestors/tpm/transport/open.ts';
import { writeState } from '../../firmware-hooks/ota-state.ts';
import { extendPcr, readPcrs } from '../../firmware-hooks/pcrs.ts';
import { main } from '../../runtime/cli/main.ts';
import { verifyManifest } from '../../runtime/firmware/manifest.ts';
import { launchSwtpm } from '../../sim/swtpm/launcher.ts';
import { captureIo } from '../helpers/cli-io.ts';

let dir: string;
let keyFile: string;
let pubFile: string;
const H0 = 'aa'.repeat(32);
const H7 = 'bb'.repeat(32);

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = captureIo({ cwd: dir });
  const code = await main(argv, io);
  return { code, out: io.stdout.join('\n'), err: io.stderr.join('\n') };
}

/** `edgeward hook manifest create <flags>`. */
const create = (...flags: string[]) => run('hook', 'manifest', 'create', ...flags);

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'edgeward-hook-cli-'));
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  keyFile = join(dir, 'vendor.key');
  pubFile = join(dir, 'vendor.pub');
  await writeFile(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  await writeFile(pubFile, publicKey.export({ format: 'pem', type: 'spki' }));
});

test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('manifest create: signs what openssl verifies with the vendor public key', async () => {
  const out = join(dir, 'm.json');
  const r = await create(
    '--key',
    keyFile,
    '--version',
    '2.3.1',
    '--pcr',
    `0=${H0}`,
    '--pcr',
    `7=${H7.toUpperCase()}`,
    '--out',
    out,
  );
  assert.is(r.code, 0, r.err);
  const env = JSON.parse(await readFile(out, 'utf8'));
  await writeFile(join(dir, 'payload'), Buffer.from(env.payload, 'base64url'));
  await writeFile(join(dir, 'sig'), Buffer.from(env.signature, 'base64url'));
  const ok = execFileSync(
    'openssl',
    ['dgst', '-sha256', '-verify', pubFile, '-signature', join(dir, 'sig'), join(dir, 'payload')],
    { encoding: 'utf8' },
  );
  assert.match(ok, /Verified OK/);
  const payload = JSON.parse(Buffer.from(env.payload, 'base64url').toString('utf8'));
  assert.equal(payload.pcrs, { 0: H0, 7: H7 });
  assert.is(payload.version, '2.3.1');
});

test('manifest create: bad input is a usage error or a key error, never a crash', async () => {
  assert.is((await create('--key', keyFile, '--version', '1', '--pcr', '0=abc')).code, 2);
  assert.is((await create('--key', keyFile, '--version', '1', '--pcr', `24=${H0}`)).code, 2);
  assert.is((await create('--key', keyFile, '--version', '1')).code, 2);
  assert.is((await create('--version', '1', '--pcr', `0=${H0}`)).code, 2);
  await chmod(keyFile, 0o644);
  const loose = await create('--key', keyFile, '--version', '1', '--pcr', `0=${H0}`);
  await chmod(keyFile, 0o600);
  assert.is(loose.code, 1);
  assert.match(loose.err, /ERR_HOOK_KEY.*0600/);
  const rsa = join(dir, 'rsa.key');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  await writeFile(rsa, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  const r = await create('--key', rsa, '--version', '1', '--pcr', `0=${H0}`);
  assert.is(r.code, 1);
  assert.match(r.err, /ERR_HOOK_KEY.*P-256/);
});

test('manifest create --from-tpm reads the reference device PCRs from a real swtpm', async () => {
  const tpm = await launchSwtpm();
  try {
    // swtpm serves one connection at a time: measure, then leave the TPM to the CLI.
    const transport = await openTransport(tpm.spec);
    await extendPcr(transport, 7, 'sha256', Buffer.alloc(32, 1));
    const live = await readPcrs(transport, 'sha256', [0, 7]);
    await transport.close();
    const out = join(dir, 'tpm.json');
    const r = await create(
      '--key',
      keyFile,
      '--version',
      '3.0',
      '--from-tpm',
      tpm.spec,
      '--pcrs',
      '0,7',
      '--out',
      out,
    );
    assert.is(r.code, 0, r.err);
    const { createPublicKey } = await import('node:crypto');
    const m = verifyManifest(await readFile(out, 'utf8'), [createPublicKey(await readFile(pubFile, 'utf8'))]);
    assert.equal(m.pcrs, live);
    assert.is.not(m.pcrs[7], '0'.repeat(64));
  } finally {
    await tpm.stop();
  }
});

test('pre-install exit codes: 3 for missing, unsigned or foreign manifests and no key; 0 when signed', async () => {
  const stateDir = join(dir, 'ota');
  const good = join(dir, 'good.json');
  await create('--key', keyFile, '--version', '2.0', '--pcr', `0=${H0}`, '--out', good);
  const base = ['hook', 'pre-install', '--state-dir', stateDir, '--firmware-key', pubFile];
  assert.is((await run(...base)).code, 3, 'no manifest');
  assert.is((await run(...base, '--manifest', join(dir, 'absent.json'))).code, 3);
  const env = JSON.parse(await readFile(good, 'utf8'));
  await writeFile(join(dir, 'unsigned.json'), JSON.stringify({ ...env, signature: undefined }));
  assert.is((await run(...base, '--manifest', join(dir, 'unsigned.json'))).code, 3);
  const flipped = Buffer.from(env.signature, 'base64url');
  flipped[10] = (flipped[10] as number) ^ 1;
  await writeFile(
    join(dir, 'bad-sig.json'),
    JSON.stringify({ ...env, signature: flipped.toString('base64url') }),
  );
  const bad = await run(...base, '--manifest', join(dir, 'bad-sig.json'));
  assert.is(bad.code, 3);
  assert.match(bad.err, /ERR_HOOK_MANIFEST_REFUSED/);
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  await writeFile(join(dir, 'other.pub'), other.export({ format: 'pem', type: 'spki' }));
  assert.is(
    (
      await run(
        'hook',
        'pre-install',
        '--state-dir',
        stateDir,
        '--firmware-key',
        join(dir, 'other.pub'),
        '--manifest',
        good,
      )
    ).code,
    3,
  );
  assert.is(
    (await run('hook', 'pre-install', '--state-dir', stateDir, '--manifest', good)).code,
    3,
    'no key: deny',
  );
  assert.is((await run(...base, '--manifest', good, '--expect-version', '2.1')).code, 3);
  const ok = await run(...base, '--manifest', good, '--expect-version', '2.0');
  assert.is(ok.code, 0, ok.err);
  assert.match(ok.out, /firmware 2.0 manifest verified/);
});

test("commit: 21 (Mender's retry-later) before post-boot, 1 after a failed post-boot or with nothing in flight", async () => {
  const stateDir = join(dir, 'ota2');
  const base = { format: 'edgeward-ota/1' as const, version: '2.0', manifest: '{}', updatedAt: 0 };
  assert.is((await run('hook', 'commit', '--state-dir', stateDir)).code, 1);
  await writeState(stateDir, { ...base, phase: 'installed' });
  const r = await run('hook', 'commit', '--state-dir', stateDir);
  assert.is(r.code, 21);
  assert.match(r.err, /ERR_HOOK_NOT_READY/);
  await writeState(stateDir, {
    ...base,
    phase: 'failed',
    failure: { code: 'ERR_HOOK_PCR_MISMATCH', message: 'x' },
  });
  assert.is((await run('hook', 'commit', '--state-dir', stateDir)).code, 1);
  // rollback after post-boot failed needs the store's snapshot: without a store it fails cleanly.
  const rb = await run('hook', 'rollback', '--state-dir', stateDir);
  assert.is(rb.code, 1);
  assert.match(rb.err, /ERR_HOOK_STORE/);
  await chmod(join(stateDir, 'ota-state.json'), 0o644);
  const loose = await run('hook', 'commit', '--state-dir', stateDir);
  assert.is(loose.code, 1);
  assert.match(loose.err, /ERR_HOOK_STATE_FILE/);
});

test('usage: unknown phase and flags are exit 2; --help documents the exit codes', async () => {
  assert.is((await run('hook', 'flash')).code, 2);
  assert.is((await run('hook', 'pre-install', '--nope')).code, 2);
  assert.is((await run('hook', 'commit')).code, 2);
  const help = await run('hook', '--help');
  assert.is(help.code, 0);
  assert.match(help.out, /21 {2}not ready yet/);
});

test.run();
