/**
 * `edgeward issuer ca create --out DIR`: a new issuer CA with a file key, for `ca` or (at a
 * rotation) `ca.next`: a P-256 key (`DIR/ca.key`, PKCS#8 PEM, 0600) and its self-signed CA
 * certificate for the trust domain (`DIR/ca.pem`). Neither file is ever replaced: when either
 * exists nothing is written (ERR_ISSUER_CA_INVALID). A CA in a PKCS#11 token: `pkcs11/ca-create.ts`.
 *
 * @example
 * ```ts
 * const { certificate, key } = await createFileCa({ dir: '/etc/edgeward/ca-2', trustDomain: 'fleet.example',
 *   ttlMs: 365 * 86_400_000, generation: 2, clock, random });
 * ```
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../core/clock.ts';
import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import { createRootCa } from '../svid/authority.ts';

export interface CreateFileCaOptions {
  /** Made (0700) when missing; must not hold ca.pem or ca.key. */
  readonly dir: string;
  readonly trustDomain: string;
  readonly ttlMs: number;
  /** Distinguishes successive CAs of the trust domain in the subject (`#2`). */
  readonly generation?: number;
  readonly clock: Clock;
  readonly random: Random;
}

export async function createFileCa(
  o: CreateFileCaOptions,
): Promise<{ certificate: string; key: string; x509: X509Certificate }> {
  const certificate = join(o.dir, 'ca.pem');
  const key = join(o.dir, 'ca.key');
  for (const f of [certificate, key])
    if (existsSync(f))
      throw new IssuerError(
        'ERR_ISSUER_CA_INVALID',
        `${f} exists: a CA key or certificate is never replaced`,
      );
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  const privateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const now = o.clock.now();
  const der = createRootCa({
    trustDomain: o.trustDomain,
    privateKey,
    notBefore: now - 60_000,
    notAfter: now + o.ttlMs,
    random: o.random,
    ...(o.generation === undefined ? {} : { generation: o.generation }),
  });
  const x509 = new X509Certificate(der);
  // 'wx': a file made meanwhile is not replaced either; a key without its certificate is removed.
  await writeFile(key, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
  try {
    await writeFile(certificate, x509.toString(), { mode: 0o644, flag: 'wx' });
  } catch (cause) {
    await rm(key, { force: true });
    throw new IssuerError('ERR_ISSUER_CA_INVALID', `cannot write ${certificate}`, {}, { cause });
  }
  return { certificate, key, x509 };
}
