/**
 * Reading a secret file for an attestor (a join token, a factory private key): it must exist, be a
 * regular file and be readable by its owner only (mode 0600 or stricter), or it is refused with
 * ERR_ATTESTOR_CONFIG. File access is injected so tests and the simulator can use their own.
 */
import { readFile, stat } from 'node:fs/promises';
import { AttestorError } from './errors.ts';

export interface SecretFs {
  readFile(path: string): Promise<Buffer>;
  stat(path: string): Promise<{ mode: number; isFile(): boolean }>;
}

export const nodeSecretFs: SecretFs = { readFile: (p) => readFile(p), stat: (p) => stat(p) };

export async function readSecretFile(
  path: string,
  what: string,
  fs: SecretFs = nodeSecretFs,
): Promise<Buffer> {
  let info: Awaited<ReturnType<SecretFs['stat']>>;
  try {
    info = await fs.stat(path);
  } catch (cause) {
    throw new AttestorError('ERR_ATTESTOR_CONFIG', `${what} ${path} cannot be read`, { cause });
  }
  if (!info.isFile()) throw new AttestorError('ERR_ATTESTOR_CONFIG', `${what} ${path} is not a regular file`);
  if ((info.mode & 0o077) !== 0)
    throw new AttestorError(
      'ERR_ATTESTOR_CONFIG',
      `${what} ${path} is readable by others (mode ${(info.mode & 0o777).toString(8)}); it must be 0600`,
    );
  try {
    return await fs.readFile(path);
  } catch (cause) {
    throw new AttestorError('ERR_ATTESTOR_CONFIG', `${what} ${path} cannot be read`, { cause });
  }
}
