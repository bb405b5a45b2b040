/**
 * `edgeward issuer ca create --pkcs11 URI`: a new issuer CA whose key is generated inside the
 * token (C_GenerateKeyPair: P-256, private, sensitive, not extractable; `key.ts`) and whose
 * self-signed certificate is signed there too; only the certificate is written (PEM, a new
 * file: an existing one is never replaced). `ca rotate` prepares a next CA the same way.
 *
 * @example
 * ```ts
 * const { certificate } = await createPkcs11Ca({ uri, module, pinFile, trustDomain: 'fleet.example',
 *   out: '/etc/edgeward/ca.pem', ttlMs: 365 * 86_400_000, clock, random });
 * ```
 */
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type { Clock } from '../../core/clock.ts';
import type { Random } from '../../core/random.ts';
import { IssuerError } from '../../errors.ts';
import { createRootCaWithKey } from '../../svid/authority.ts';
import { generatePkcs11CaKey } from './key.ts';

export interface CreatePkcs11CaOptions {
  readonly uri: string;
  readonly module: string;
  readonly pinFile: string;
  readonly trustDomain: string;
  /** Where the certificate (PEM) goes; must not exist. */
  readonly out: string;
  readonly ttlMs: number;
  /** Distinguishes successive CAs of the trust domain in the subject (`#2`). */
  readonly generation?: number;
  readonly clock: Clock;
  readonly random: Random;
}

export async function createPkcs11Ca(o: CreatePkcs11CaOptions): Promise<{ certificate: Buffer }> {
  // Before the key is made: no key without its certificate for an existing file.
  if (existsSync(o.out))
    throw new IssuerError('ERR_ISSUER_CA_INVALID', `${o.out} exists: a CA certificate is never replaced`);
  const key = await generatePkcs11CaKey({ uri: o.uri, module: o.module, pinFile: o.pinFile });
  try {
    const now = o.clock.now();
    const certificate = await createRootCaWithKey({
      trustDomain: o.trustDomain,
      key,
      notBefore: now - 60_000,
      notAfter: now + o.ttlMs,
      random: o.random,
      ...(o.generation === undefined ? {} : { generation: o.generation }),
    });
    try {
      await writeFile(o.out, new X509Certificate(certificate).toString(), { mode: 0o644, flag: 'wx' });
    } catch (cause) {
      throw new IssuerError(
        'ERR_ISSUER_CA_INVALID',
        `cannot write ${o.out} (an existing file is not replaced); the key ${key.uri} is in the token: sign a certificate for it or delete it there`,
        {},
        { cause },
      );
    }
    return { certificate };
  } finally {
    await key.close();
  }
}
