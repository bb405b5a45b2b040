/**
 * Reading the issuer's key material from PEM files: a private key must be mode 0600 (no group
 * or other bits), or it is refused with `ERR_ISSUER_KEY_PERMISSIONS`; certificates are read as
 * PEM (one or several blocks).
 */
import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { IssuerError } from '../errors.ts';
import { pemCertificates } from '../svid/certificate.ts';

export async function readPrivateKeyFile(path: string): Promise<KeyObject> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (cause) {
    throw new IssuerError('ERR_ISSUER_CA_INVALID', `cannot read key file ${path}`, {}, { cause });
  }
  if ((st.mode & 0o077) !== 0)
    throw new IssuerError(
      'ERR_ISSUER_KEY_PERMISSIONS',
      `${path} is mode ${(st.mode & 0o777).toString(8)}: a private key file must be 0600`,
    );
  try {
    return createPrivateKey(await readFile(path));
  } catch (cause) {
    throw new IssuerError('ERR_ISSUER_CA_INVALID', `${path} holds no usable private key`, {}, { cause });
  }
}

/** Every certificate in a PEM file, in order. */
export async function readCertificatesFile(path: string): Promise<X509Certificate[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new IssuerError('ERR_ISSUER_CA_INVALID', `cannot read ${path}`, {}, { cause });
  }
  let certs: X509Certificate[];
  try {
    certs = pemCertificates(text);
  } catch (cause) {
    throw new IssuerError(
      'ERR_ISSUER_CA_INVALID',
      `${path} holds a certificate that does not parse`,
      {},
      { cause },
    );
  }
  if (certs.length === 0) throw new IssuerError('ERR_ISSUER_CA_INVALID', `${path} holds no PEM certificate`);
  return certs;
}

/** A public key (PEM SPKI) or a certificate's key, for firmware-signing keys. */
export async function readPublicKeyFile(path: string): Promise<KeyObject> {
  try {
    const text = await readFile(path, 'utf8');
    return text.includes('BEGIN CERTIFICATE') ? new X509Certificate(text).publicKey : createPublicKey(text);
  } catch (cause) {
    throw new IssuerError('ERR_ISSUER_CA_INVALID', `${path} holds no usable public key`, {}, { cause });
  }
}
