/**
 * A device identity on disk, in the form mosquitto clients use as is: `key.pem` (PKCS#8, mode
 * 0600), `svid.pem` (leaf then chain) and `bundle.pem` (trust bundle roots). Writes go to a
 * temporary file and are renamed, so a crash never leaves half a key or a key without its
 * certificate's predecessor.
 */
import { createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pemCertificates } from '../../runtime/svid/certificate.ts';
import { TransportError } from '../errors.ts';

export interface StoredIdentity {
  readonly key: KeyObject;
  readonly chain: readonly X509Certificate[];
  readonly roots: readonly X509Certificate[];
}

export const FILES = { key: 'key.pem', cert: 'svid.pem', bundle: 'bundle.pem' } as const;

async function atomicWrite(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, data, { mode });
  await rename(tmp, path);
}

export async function writeIdentity(dir: string, id: StoredIdentity): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await atomicWrite(join(dir, FILES.bundle), id.roots.map((c) => c.toString()).join(''), 0o644);
  await atomicWrite(join(dir, FILES.key), id.key.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  await atomicWrite(join(dir, FILES.cert), id.chain.map((c) => c.toString()).join(''), 0o644);
}

/** Replace only bundle.pem (same mode as `writeIdentity`, atomically): a CA rotation. */
export async function writeBundle(dir: string, roots: readonly X509Certificate[]): Promise<void> {
  await atomicWrite(join(dir, FILES.bundle), roots.map((c) => c.toString()).join(''), 0o644);
}

/** Read a stored identity; undefined when there is none, `ERR_DEVICE_IDENTITY` when it is damaged. */
export async function readIdentity(dir: string): Promise<StoredIdentity | undefined> {
  let texts: string[];
  try {
    texts = await Promise.all(
      [FILES.key, FILES.cert, FILES.bundle].map((f) => readFile(join(dir, f), 'utf8')),
    );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TransportError(
      'ERR_DEVICE_IDENTITY',
      `cannot read the identity in ${dir}: ${(err as Error).message}`,
    );
  }
  try {
    const [k, c, b] = texts as [string, string, string];
    const chain = pemCertificates(c);
    const roots = pemCertificates(b);
    if (chain.length === 0 || roots.length === 0) throw new Error('no certificate');
    return { key: createPrivateKey(k), chain, roots };
  } catch (err) {
    throw new TransportError(
      'ERR_DEVICE_IDENTITY',
      `the identity in ${dir} is damaged: ${(err as Error).message}`,
    );
  }
}
