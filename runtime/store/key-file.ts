/**
 * A key-encryption key in a 0600 file: the data-key protector for gateways without a TPM
 * (join-token). It is weaker than TPM sealing — anyone who reads the file and the store has
 * the keys — so it says so in a warning every time it is opened.
 *
 * The file holds 32 random bytes. It is created with mode 0600 (O_EXCL, never overwritten);
 * an existing file readable by group or others is refused, not silently fixed.
 */
import type { Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { AgentError } from '../errors.ts';
import type { DataKeyProtector } from './protector.ts';
import { gcmOpen, gcmSeal } from './value-crypto.ts';

const KEY_BYTES = 32;
const AAD = Buffer.from('edgeward data key v1', 'utf8');

/** Open (or create) the key file at `path` and return a protector built on it. */
export async function keyFileProtector(
  path: string,
  random: Random,
  logger: Logger,
): Promise<DataKeyProtector> {
  const kek = await loadOrCreate(path, random);
  logger.warn('store data key protected by a key file, not a TPM', { event: 'store.key-file', path });
  return {
    kind: 'key-file',
    seal: async (dataKey) => gcmSeal(kek, AAD, dataKey, random),
    async unseal(blob) {
      const dataKey = gcmOpen(kek, AAD, blob);
      if (dataKey === undefined)
        throw new AgentError('ERR_STORE_KEY', `key file ${path} does not open the store data key`, { path });
      return dataKey;
    },
  };
}

async function loadOrCreate(path: string, random: Random): Promise<Buffer> {
  let info: Stats | undefined;
  try {
    info = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw keyFileError(path, (err as Error).message, err);
  }
  if (info === undefined) {
    const key = random.bytes(KEY_BYTES);
    const handle = await open(path, 'wx', 0o600);
    try {
      await handle.writeFile(key);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return key;
  }
  if (!info.isFile()) throw keyFileError(path, 'is not a regular file');
  if ((info.mode & 0o077) !== 0)
    throw keyFileError(path, `has mode ${(info.mode & 0o777).toString(8)}; it must be 0600`);
  const handle = await open(path, 'r');
  try {
    const key = await handle.readFile();
    if (key.length !== KEY_BYTES) throw keyFileError(path, `holds ${key.length} bytes, not ${KEY_BYTES}`);
    return key;
  } finally {
    await handle.close();
  }
}

function keyFileError(path: string, what: string, cause?: unknown): AgentError {
  return new AgentError('ERR_STORE_KEY_FILE', `key file ${path} ${what}`, { path }, { cause });
}
