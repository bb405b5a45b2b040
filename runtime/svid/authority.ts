/**
 * Building the certificates that are not SVIDs: a self-signed issuer root CA (the trust
 * domain's bundle root) and a TLS server certificate for the issuer's HTTPS listener. These are
 * made rarely (dev setup, CA rotation), so they are built directly rather than templated.
 *
 * @example
 * ```ts
 * const root = createRootCa({ trustDomain: 'fleet.example', privateKey, notBefore, notAfter, random });
 * const tls = createServerCertificate({ issuer: root, issuerKey: privateKey, spki, hosts: ['127.0.0.1'], ... });
 * ```
 */

import type { KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import type { Random } from '../core/random.ts';
import { bitString, explicit, seq, TAG, time, tlv, uint } from '../spiffe/der.ts';
import type { CaKey } from './ca-key.ts';
import { parseCertificate } from './certificate.ts';
import {
  authorityKeyId,
  basicConstraints,
  extKeyUsage,
  type GeneralName,
  keyIdentifier,
  keyUsage,
  name,
  OID,
  subjectAltName,
  subjectKeyId,
} from './extensions.ts';
import { ipAddressBytes, randomSerial, signatureAlgorithm, signTbs, spkiOf, VERSION_3 } from './signer.ts';

export interface RootCaOptions {
  readonly trustDomain: string;
  readonly privateKey: KeyObject;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly random: Random;
  /** Distinguishes successive CAs of one trust domain in their subject (CA rotation). */
  readonly generation?: number;
}

/** A self-signed root: cA true, critical KU keyCertSign+cRLSign, SKI. */
export function createRootCa(o: RootCaOptions): Buffer {
  const alg = signatureAlgorithm(o.privateKey);
  return signTbs(rootTbs(o, spkiOf(o.privateKey), alg.algId), o.privateKey, alg);
}

/**
 * The same root, its key behind the `CaKey` seam (a PKCS#11 token key: `edgeward issuer ca
 * create --pkcs11`): the TBSCertificate is built here, only the signature is the key's.
 */
export async function createRootCaWithKey(
  o: Omit<RootCaOptions, 'privateKey'> & { key: CaKey },
): Promise<Buffer> {
  const alg = signatureAlgorithm(o.key.publicKey);
  const tbs = rootTbs(o, o.key.spki, alg.algId);
  return seq(tbs, alg.algId, bitString(await o.key.sign(tbs)));
}

function rootTbs(o: Omit<RootCaOptions, 'privateKey'>, spki: Buffer, algId: Buffer): Buffer {
  const subj = name(`edgeward CA ${o.trustDomain}${o.generation ? ` #${o.generation}` : ''}`, 'edgeward');
  return seq(
    VERSION_3,
    uint(randomSerial(o.random)),
    algId,
    subj,
    seq(time(o.notBefore), time(o.notAfter)),
    subj,
    spki,
    explicit(3, seq(basicConstraints(true), keyUsage([0, 5, 6]), subjectKeyId(keyIdentifier(spki)))),
  );
}

export interface ServerCertOptions {
  readonly issuerCertificate: Uint8Array;
  readonly issuerKey: KeyObject;
  readonly subjectKey: KeyObject;
  /** DNS names and IP addresses for the SAN. */
  readonly hosts: readonly string[];
  readonly notBefore: number;
  readonly notAfter: number;
  readonly random: Random;
}

/** A TLS server certificate: cA false, KU digitalSignature, EKU serverAuth, DNS/IP SANs. */
export function createServerCertificate(o: ServerCertOptions): Buffer {
  const issuer = parseCertificate(o.issuerCertificate);
  const alg = signatureAlgorithm(o.issuerKey);
  const spki = spkiOf(o.subjectKey);
  const names: GeneralName[] = o.hosts.map((h) => (isIP(h) ? { ip: ipAddressBytes(h) } : { dns: h }));
  const tbs = seq(
    VERSION_3,
    uint(randomSerial(o.random)),
    alg.algId,
    issuer.subjectDer,
    seq(time(Math.max(o.notBefore, issuer.notBefore)), time(Math.min(o.notAfter, issuer.notAfter))),
    name(o.hosts[0] ?? 'edgeward issuer'),
    spki,
    explicit(
      3,
      tlv(
        TAG.SEQUENCE,
        basicConstraints(false),
        keyUsage([0]),
        extKeyUsage(OID.serverAuth),
        subjectKeyId(keyIdentifier(spki)),
        authorityKeyId(issuer.subjectKeyId ?? keyIdentifier(issuer.spki)),
        subjectAltName(...names),
      ),
    ),
  );
  return signTbs(tbs, o.issuerKey, alg);
}
