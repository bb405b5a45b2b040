/**
 * post-install's failures name their cause and change nothing: a store that cannot give the
 * current SVID fails with the store's code (not as an issuer refusal), an issuer that refuses the
 * staging with ERR_HOOK_PUBLISH; either way the phase stays `verified` and the store untouched.
 * The successful path runs end to end through the CLI in ota-sim/ota-swtpm.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLevel } from 'memory-level';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { HookContext } from '../../firmware-hooks/context.ts';
import { HookError } from '../../firmware-hooks/errors.ts';
import { readState, writeState } from '../../firmware-hooks/ota-state.ts';
import { postInstall } from '../../firmware-hooks/post-install.ts';
import type { FirmwareStaging } from '../../firmware-hooks/staging.ts';
import { nullLogger } from '../../runtime/core/logger.ts';
import { AgentError } from '../../runtime/errors.ts';
import { signManifest } from '../../runtime/firmware/manifest.ts';
import type { X509Svid } from '../../runtime/sources/types.ts';
import type { DataKeyProtector } from '../../runtime/store/protector.ts';
import type { LevelDb } from '../../runtime/store/sealed-store.ts';
import { rejects } from '../helpers/rejects.ts';

const vendor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const manifest = signManifest(
  { version: '2.0', bank: 'sha256', pcrs: { 0: 'aa'.repeat(32) } },
  vendor.privateKey,
  0,
);
const unused: DataKeyProtector = {
  kind: 'key-file',
  seal: async () => assert.unreachable('nothing is sealed') as never,
  unseal: async () => assert.unreachable('nothing is unsealed') as never,
};

async function attempt(
  staging: { issuer: FirmwareStaging; currentSvid: () => Promise<X509Svid> },
  code: string,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeward-post-install-'));
  const db = new MemoryLevel<string, Uint8Array>({
    keyEncoding: 'utf8',
    valueEncoding: 'view',
  }) as unknown as LevelDb;
  try {
    await writeState(dir, {
      format: 'edgeward-ota/1',
      phase: 'verified',
      version: '2.0',
      manifest,
      updatedAt: 0,
    });
    const published: string[] = [];
    const ctx: HookContext = {
      stateDir: dir,
      db,
      sealing: { current: unused, forReboot: () => undefined },
      trusted: [vendor.publicKey],
      publish: async (text) => {
        published.push(text);
      },
      staging,
      readPcrs: undefined,
      reattest: async () => assert.unreachable('post-install does not re-attest') as never,
      now: () => 1,
      logger: nullLogger,
    };
    await rejects(() => postInstall(ctx), code);
    assert.equal(published, [manifest]);
    assert.is((await readState(dir))?.phase, 'verified');
    assert.equal(await db.keys().all(), [], 'no snapshot, no re-seal');
  } finally {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const neverStaged: FirmwareStaging = {
  stage: async () => assert.unreachable('not staged without an SVID') as never,
  end: async () => assert.unreachable('not ended') as never,
};

test('a store that cannot give the current SVID fails with its own code, not as an issuer refusal', async () => {
  await attempt(
    {
      issuer: neverStaged,
      currentSvid: async () => {
        throw new HookError('ERR_HOOK_STORE', 'the store holds no gateway identity');
      },
    },
    'ERR_HOOK_STORE',
  );
});

test('an issuer that refuses the staging: ERR_HOOK_PUBLISH', async () => {
  await attempt(
    {
      issuer: {
        stage: async () => {
          throw new AgentError('ERR_UPSTREAM_REFUSED', 'gateway unknown');
        },
        end: neverStaged.end,
      },
      currentSvid: async () => ({
        spiffeId: 'spiffe://fleet.example/gateway/gw-1',
        chain: [],
        privateKey: vendor.privateKey,
        notAfter: 2,
      }),
    },
    'ERR_HOOK_PUBLISH',
  );
});

test.run();
