/**
 * Development key material for an in-process issuer: a P-256 CA (key 0600), a TLS server
 * certificate for 127.0.0.1 and localhost signed by it, and a P-256 JWT-SVID signing key
 * (`jwt.key`, 0600), in `dir`. Existing files are reused, so
 * a dev agent keeps its trust root across restarts.
 *
 * @example
 * ```ts
 * const dev = await createDevIssuerFiles('./.edgeward/issuer', { trustDomain: 'fleet.example', clock, random });
 * dev.ca.certificate; dev.tls.cert; dev.paths.caCertificate
 * ```
 */
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../core/clock.ts';
import type { Random } from '../core/random.ts';
import { createRootCa, createServerCertificate } from '../svid/authority.ts';
import type { CaKeyPair } from './ca.ts';
import { readPrivateKeyFile } from './files.ts';
import type { TlsMaterial } from './http.ts';

const DAY = 86_400_000;

export interface DevIssuerFiles {
  readonly ca: CaKeyPair;
  readonly tls: TlsMaterial;
  /** The JWT-SVID signing key (ES256). */
  readonly jwtKey: KeyObject;
  readonly paths: {
    caCertificate: string;
    caKey: string;
    tlsCertificate: string;
    tlsKey: string;
    jwtKey: string;
  };
}

export async function createDevIssuerFiles(
  dir: string,
  o: { trustDomain: string; clock: Clock; random: Random; caTtlMs?: number },
): Promise<DevIssuerFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const paths = {
    caCertificate: join(dir, 'ca.pem'),
    caKey: join(dir, 'ca.key'),
    tlsCertificate: join(dir, 'tls.pem'),
    tlsKey: join(dir, 'tls.key'),
    jwtKey: join(dir, 'jwt.key'),
  };
  const now = o.clock.now();
  if (!existsSync(paths.caCertificate) || !existsSync(paths.caKey)) {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const der = createRootCa({
      trustDomain: o.trustDomain,
      privateKey: key,
      notBefore: now - 60_000,
      notAfter: now + (o.caTtlMs ?? 365 * DAY),
      random: o.random,
    });
    await writeFile(paths.caKey, key.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    await writeFile(paths.caCertificate, new X509Certificate(der).toString(), { mode: 0o644 });
  }
  const caKey = await readPrivateKeyFile(paths.caKey);
  const caCert = new X509Certificate(await readFile(paths.caCertificate));
  if (!existsSync(paths.tlsCertificate) || !existsSync(paths.tlsKey)) {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const der = createServerCertificate({
      issuerCertificate: caCert.raw,
      issuerKey: caKey,
      subjectKey: key,
      hosts: ['127.0.0.1', 'localhost', '::1'],
      notBefore: now - 60_000,
      notAfter: now + 90 * DAY,
      random: o.random,
    });
    await writeFile(paths.tlsKey, key.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    await writeFile(paths.tlsCertificate, new X509Certificate(der).toString(), { mode: 0o644 });
  }
  await readPrivateKeyFile(paths.tlsKey); // refuses a key file whose mode was loosened
  if (!existsSync(paths.jwtKey)) {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    await writeFile(paths.jwtKey, key.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  }
  return {
    jwtKey: await readPrivateKeyFile(paths.jwtKey),
    ca: { certificate: caCert.raw, privateKey: caKey },
    tls: { cert: await readFile(paths.tlsCertificate), key: await readFile(paths.tlsKey) },
    paths,
  };
}
