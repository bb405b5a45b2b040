/**
 * The simulator's manufacturer PKI: a root CA and an EK-issuing intermediate (ECDSA P-256, keys
 * drawn from the injected Random and never written anywhere), and EK certificates in the TCG EK
 * Credential Profile shape: empty subject, critical SAN directoryName with the TPM manufacturer,
 * model and version attributes (2.23.133.2.1/2/3), EKU 2.23.133.8.1, key usage keyEncipherment
 * (RSA) or keyAgreement (ECC), notAfter 9999-12-31. The CA certificates are written beside the
 * state so an issuer can be told to trust them explicitly (dev mode); nothing trusts them by default.
 *
 * @peculiar/x509 is loaded lazily: it is only needed when a state directory is provisioned.
 */
import { createPublicKey, webcrypto } from 'node:crypto';
import { TPM_ECC } from '../../attestors/tpm/wire/constants.ts';
import type { Random } from '../../runtime/core/random.ts';
import { eccPrivateKey, eccScalar } from './keys.ts';
import { MANUFACTURER } from './tpm.ts';

type X509 = typeof import('@peculiar/x509');
const ECDSA = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const FOREVER = new Date(Date.UTC(9999, 11, 31, 23, 59, 59));
const YEAR_MS = 365.25 * 24 * 3600 * 1000;

async function x509(): Promise<X509> {
  await import('reflect-metadata');
  return import('@peculiar/x509');
}

interface CaKey {
  readonly privateKey: webcrypto.CryptoKey;
  readonly publicKey: webcrypto.CryptoKey;
}

async function caKey(random: Random): Promise<CaKey> {
  const priv = eccPrivateKey(
    TPM_ECC.NIST_P256,
    eccScalar(TPM_ECC.NIST_P256, () => random.bytes(32)),
  );
  const pkcs8 = priv.export({ format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  return {
    privateKey: await webcrypto.subtle.importKey('pkcs8', pkcs8, ECDSA, false, ['sign']),
    publicKey: await webcrypto.subtle.importKey('spki', spki, ECDSA, true, ['verify']),
  };
}

function serial(random: Random): string {
  const b = random.bytes(16);
  b[0] = ((b[0] as number) & 0x7f) | 0x01;
  return b.toString('hex');
}

export interface ManufacturerCa {
  readonly rootPem: string;
  readonly intermediatePem: string;
  /** Sign an EK certificate for the public key `spki` (DER SubjectPublicKeyInfo). */
  issueEk(spki: Buffer, kind: 'rsa' | 'ecc'): Promise<Buffer>;
}

export async function createManufacturerCa(random: Random, nowMs: number): Promise<ManufacturerCa> {
  const x = await x509();
  const crypto = webcrypto as unknown as Parameters<X509['X509CertificateGenerator']['create']>[1];
  const now = new Date(nowMs);
  const rootKey = await caKey(random);
  const interKey = await caKey(random);
  const rootName = 'CN=edgeward simulator manufacturer root CA, O=edgeward-sim';
  const interName = 'CN=edgeward simulator EK CA, O=edgeward-sim';
  const caUsage = x.KeyUsageFlags.keyCertSign | x.KeyUsageFlags.cRLSign;
  const root = await x.X509CertificateGenerator.create(
    {
      serialNumber: serial(random),
      subject: rootName,
      issuer: rootName,
      notBefore: now,
      notAfter: new Date(nowMs + 30 * YEAR_MS),
      publicKey: rootKey.publicKey,
      signingKey: rootKey.privateKey,
      signingAlgorithm: SIGN,
      extensions: [
        new x.BasicConstraintsExtension(true, 1, true),
        new x.KeyUsagesExtension(caUsage, true),
        await x.SubjectKeyIdentifierExtension.create(rootKey.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const inter = await x.X509CertificateGenerator.create(
    {
      serialNumber: serial(random),
      subject: interName,
      issuer: rootName,
      notBefore: now,
      notAfter: new Date(nowMs + 30 * YEAR_MS),
      publicKey: interKey.publicKey,
      signingKey: rootKey.privateKey,
      signingAlgorithm: SIGN,
      extensions: [
        new x.BasicConstraintsExtension(true, 0, true),
        new x.KeyUsagesExtension(caUsage, true),
        await x.SubjectKeyIdentifierExtension.create(interKey.publicKey, false, crypto),
        await x.AuthorityKeyIdentifierExtension.create(rootKey.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const manufacturer = MANUFACTURER.toString(16).toUpperCase().padStart(8, '0');
  return {
    rootPem: root.toString('pem'),
    intermediatePem: inter.toString('pem'),
    async issueEk(spki, kind) {
      const cert = await x.X509CertificateGenerator.create(
        {
          serialNumber: serial(random),
          subject: '',
          issuer: interName,
          notBefore: now,
          notAfter: FOREVER,
          publicKey: spki,
          signingKey: interKey.privateKey,
          signingAlgorithm: SIGN,
          extensions: [
            new x.BasicConstraintsExtension(false, undefined, true),
            new x.KeyUsagesExtension(
              kind === 'rsa' ? x.KeyUsageFlags.keyEncipherment : x.KeyUsageFlags.keyAgreement,
              true,
            ),
            new x.ExtendedKeyUsageExtension(['2.23.133.8.1']),
            new x.SubjectAlternativeNameExtension(
              [
                {
                  type: 'dn',
                  value: `2.23.133.2.1=id:${manufacturer}+2.23.133.2.2=edgeward-sim+2.23.133.2.3=id:20260101`,
                },
              ],
              true,
            ),
            await x.AuthorityKeyIdentifierExtension.create(interKey.publicKey, false, crypto),
          ],
        },
        crypto,
      );
      return Buffer.from(cert.rawData);
    },
  };
}
