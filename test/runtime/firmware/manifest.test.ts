import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  firmwareKeyId,
  MANIFEST_FORMAT,
  signManifest,
  verifyManifest,
} from '../../../runtime/firmware/manifest.ts';
import { rejects } from '../../helpers/rejects.ts';

const vendor = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const pcr0 = 'ab'.repeat(32);
const NOW = Date.UTC(2026, 10, 1);

test('a signed manifest verifies against its key and keeps its values', () => {
  const text = signManifest(
    { version: '2.3.1', bank: 'sha256', pcrs: { 0: pcr0, 7: '00'.repeat(32) } },
    vendor.privateKey,
    NOW,
  );
  const m = verifyManifest(text, [other.publicKey, vendor.publicKey]);
  assert.is(m.version, '2.3.1');
  assert.equal(m.pcrs, { 0: pcr0, 7: '00'.repeat(32) });
  assert.is(m.keyId, firmwareKeyId(vendor.publicKey));
  assert.is(m.createdAt, '2026-11-01T00:00:00.000Z');
});

test('an unknown signer, a bad signature and a changed payload are refused with their codes', async () => {
  const text = signManifest({ version: '1', bank: 'sha256', pcrs: { 0: pcr0 } }, vendor.privateKey, NOW);
  await rejects(() => verifyManifest(text, [other.publicKey]), 'ERR_MANIFEST_UNKNOWN_KEY');
  const env = JSON.parse(text);
  const forged = {
    ...env,
    payload: Buffer.from(
      JSON.stringify({
        version: '1',
        bank: 'sha256',
        pcrs: { 0: 'cd'.repeat(32) },
        createdAt: '2026-01-01T00:00:00Z',
      }),
    ).toString('base64url'),
  };
  await rejects(() => verifyManifest(JSON.stringify(forged), [vendor.publicKey]), 'ERR_MANIFEST_SIGNATURE');
  const resigned = { ...env, signature: Buffer.from('3006020101020101', 'hex').toString('base64url') };
  await rejects(() => verifyManifest(JSON.stringify(resigned), [vendor.publicKey]), 'ERR_MANIFEST_SIGNATURE');
});

test('malformed envelopes and payloads are ERR_MANIFEST_INVALID', async () => {
  for (const bad of [
    'not json',
    '[]',
    JSON.stringify({ format: 'x' }),
    JSON.stringify({ format: MANIFEST_FORMAT, keyId: 'zz' }),
    'x'.repeat(20_000),
  ]) {
    await rejects(() => verifyManifest(bad, [vendor.publicKey]), 'ERR_MANIFEST_INVALID');
  }
  assert.throws(
    () => signManifest({ version: '1', bank: 'sha256', pcrs: { 24: pcr0 } }, vendor.privateKey, NOW),
    (e: Error & { code?: string }) => e.code === 'ERR_MANIFEST_INVALID',
  );
  assert.throws(
    () => signManifest({ version: '1', bank: 'sha256', pcrs: { 0: 'abc' } }, vendor.privateKey, NOW),
    (e: Error & { code?: string }) => e.code === 'ERR_MANIFEST_INVALID',
  );
});

test('a payload signed by openssl verifies (vendors can sign without edgeward)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-manifest-'));
  const payload = JSON.stringify({
    version: '9.9',
    bank: 'sha256',
    pcrs: { 0: pcr0 },
    createdAt: '2026-11-01T00:00:00Z',
  });
  writeFileSync(join(dir, 'payload.json'), payload);
  writeFileSync(join(dir, 'key.pem'), vendor.privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
  });
  const sig = execFileSync('openssl', [
    'dgst',
    '-sha256',
    '-sign',
    join(dir, 'key.pem'),
    join(dir, 'payload.json'),
  ]);
  const env = {
    format: MANIFEST_FORMAT,
    keyId: firmwareKeyId(vendor.publicKey),
    payload: Buffer.from(payload).toString('base64url'),
    signature: sig.toString('base64url'),
  };
  assert.is(verifyManifest(JSON.stringify(env), [vendor.publicKey]).version, '9.9');
});

test.run();
