/**
 * PKCS#10 certificate signing requests for ECDSA P-256 keys held as `node:crypto` KeyObjects:
 * what a device sends to enroll or renew. The CN is the device id (the issuer sets the SPIFFE ID;
 * a CSR's own names are ignored).
 *
 * @example
 * ```ts
 * const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
 * const csrDer = await createCsr(key, 'sensor-1');
 * ```
 */
import 'reflect-metadata';
import { createPublicKey, type KeyObject, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { ECDSA_P256, toSigningKey } from './issue.ts';

export async function createCsr(key: KeyObject, commonName: string): Promise<Uint8Array> {
  const publicKey = await webcrypto.subtle.importKey(
    'spki',
    createPublicKey(key).export({ type: 'spki', format: 'der' }),
    ECDSA_P256,
    true,
    ['verify'],
  );
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName.replace(/[,+=<>#;"\\]/g, '_')}`,
    keys: { privateKey: await toSigningKey(key), publicKey: publicKey as never },
    signingAlgorithm: ECDSA_P256,
  });
  return new Uint8Array(csr.rawData);
}
