/**
 * `promisedValues` (firmware-hooks/from-config.ts): what post-install seals the data key to when
 * the agent seals to a PCR policy — the manifest's sha256 values of exactly the policy's PCRs. A
 * manifest in another bank, or one that promises nothing for a sealed PCR, is refused with
 * ERR_HOOK_RESEAL before anything is sealed (sealing to a guess would lock the store for good).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { promisedValues } from '../../firmware-hooks/from-config.ts';
import type { FirmwareManifest } from '../../runtime/firmware/manifest.ts';
import { rejects } from '../helpers/rejects.ts';

const manifest = (bank: FirmwareManifest['bank'], pcrs: Record<number, string>): FirmwareManifest => ({
  version: '2.0',
  bank,
  pcrs,
  createdAt: '2026-01-01T00:00:00Z',
  keyId: '00'.repeat(32),
});

test('the sealed PCRs get the manifest values as bytes; other promised PCRs are left out', () => {
  const got = promisedValues(
    manifest('sha256', { 0: 'aa'.repeat(32), 4: 'cc'.repeat(32), 7: 'bb'.repeat(32) }),
    [0, 7],
  );
  assert.equal(Object.keys(got), ['0', '7']);
  assert.equal(got[0], Buffer.alloc(32, 0xaa));
  assert.equal(got[7], Buffer.alloc(32, 0xbb));
});

test('a manifest of another bank, or without a value for a sealed PCR: ERR_HOOK_RESEAL', async () => {
  await rejects(() => promisedValues(manifest('sha384', { 0: 'aa'.repeat(48) }), [0]), 'ERR_HOOK_RESEAL');
  const err = await rejects<{ fields: { missing: number[] } }>(
    () => promisedValues(manifest('sha256', { 0: 'aa'.repeat(32) }), [0, 7]),
    'ERR_HOOK_RESEAL',
  );
  assert.equal(err.fields.missing, [7]);
});

test.run();
