/**
 * Firmware keys. Gateways trust the vendor's firmware public keys (PEM files, `--firmware-key`);
 * the vendor's manifest tool signs with the private key, which must be an ECDSA P-256 key in a
 * 0600 file. An empty trust list refuses every manifest (deny by default).
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { HookError } from './errors.ts';

/** Load trusted firmware public keys (or certificates / private keys, whose public half is used). */
export async function loadTrustedKeys(files: readonly string[]): Promise<KeyObject[]> {
  if (files.length === 0)
    throw new HookError('ERR_HOOK_NO_FIRMWARE_KEY', 'no firmware key configured: every manifest is refused');
  const keys: KeyObject[] = [];
  for (const file of files) {
    let pem: string;
    try {
      pem = await readFile(file, 'utf8');
    } catch (cause) {
      throw new HookError(
        'ERR_HOOK_KEY',
        `firmware key ${file}: ${(cause as Error).message}`,
        { file },
        { cause },
      );
    }
    try {
      keys.push(createPublicKey(pem));
    } catch (cause) {
      throw new HookError(
        'ERR_HOOK_KEY',
        `firmware key ${file} is not a PEM public key`,
        { file },
        { cause },
      );
    }
  }
  return keys;
}

/** Load the vendor's signing key: a 0600 PEM file holding an ECDSA P-256 private key. */
export async function loadSigningKey(file: string): Promise<KeyObject> {
  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch (cause) {
    throw new HookError(
      'ERR_HOOK_KEY',
      `signing key ${file}: ${(cause as Error).message}`,
      { file },
      { cause },
    );
  }
  if ((mode & 0o077) !== 0)
    throw new HookError(
      'ERR_HOOK_KEY',
      `signing key ${file} has mode ${(mode & 0o777).toString(8)}; it must be 0600`,
      { file },
    );
  let key: KeyObject;
  try {
    key = createPrivateKey(await readFile(file, 'utf8'));
  } catch (cause) {
    throw new HookError('ERR_HOOK_KEY', `signing key ${file} is not a PEM private key`, { file }, { cause });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new HookError('ERR_HOOK_KEY', `signing key ${file} is not an ECDSA P-256 key`, { file });
  return key;
}
