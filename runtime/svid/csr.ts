/**
 * PKCS#10 certification requests (RFC 2986): build one for a key, and parse and verify one
 * from untrusted bytes. A parsed CSR is only returned when its self-signature verifies with
 * its own key and the key is strong enough: EC P-256 or P-384, or RSA of at least 2048 bits; an
 * EC key must name its curve by OID (RFC 5480 §2.1.1: namedCurve only; explicit curve parameters
 * are refused with `ERR_CSR_EXPLICIT_CURVE`, though OpenSSL would import them).
 * The subject the CSR asks for is ignored by the signer (the SPIFFE ID decides it).
 *
 * @example
 * ```ts
 * const der = createCsr(privateKey);
 * const { spki, publicKey } = parseCsr(der);   // throws ERR_CSR_MALFORMED / _SIGNATURE / _WEAK_KEY
 * ```
 */
import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { SvidError } from '../errors.ts';
import { DerReader, explicit, oidText, seq, TAG } from '../spiffe/der.ts';
import { name, OID } from './extensions.ts';
import { signatureAlgorithm, signTbs, spkiOf } from './signer.ts';

/** A SubjectPublicKeyInfo of an uncompressed P-256 point, up to and including the point's 0x04 (RFC 5480). */
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d03010703420004', 'hex');

/**
 * The key of a SubjectPublicKeyInfo. A P-256 point (what gateways and devices send) is imported
 * from its coordinates as a JWK: the same checks (on the curve, else a throw) for about 65 µs
 * where OpenSSL's SPKI decoder takes about 110 µs — on every CSR the issuer and the agent's device
 * signer see. Anything else goes through the DER decoder.
 */
function importSpki(spki: Buffer): KeyObject {
  if (spki.length === 91 && spki.subarray(0, 27).equals(P256_SPKI_PREFIX)) {
    const coordinate = (from: number) => spki.subarray(from, from + 32).toString('base64url');
    return createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: coordinate(27), y: coordinate(59) },
      format: 'jwk',
    });
  }
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

export interface ParsedCsr {
  /** SubjectPublicKeyInfo DER, exactly as in the CSR. */
  readonly spki: Buffer;
  readonly publicKey: KeyObject;
}

/**
 * RFC 5480 §2.1.1: the parameters of an id-ecPublicKey AlgorithmIdentifier MUST be a namedCurve
 * OID. `spki` is a SubjectPublicKeyInfo DER that already read as one SEQUENCE.
 */
function refuseExplicitCurve(spki: Buffer): void {
  let params: number | undefined;
  let alg: string;
  try {
    const body = new DerReader(new DerReader(spki, 'SPKI').read(TAG.SEQUENCE, 'SPKI').content, 'SPKI');
    const ai = new DerReader(body.read(TAG.SEQUENCE, 'algorithm').content, 'SPKI');
    alg = oidText(ai.read(TAG.OID, 'algorithm').content);
    if (alg !== OID.ecPublicKey) return;
    params = ai.read(undefined, 'parameters').tag;
    ai.end('algorithm');
  } catch (cause) {
    throw new SvidError('ERR_CSR_MALFORMED', `CSR: public key info: ${(cause as Error).message}`, { cause });
  }
  if (params !== TAG.OID)
    throw new SvidError(
      'ERR_CSR_EXPLICIT_CURVE',
      'CSR: EC key with explicit curve parameters refused (RFC 5480: namedCurve only)',
    );
}

/** Hash per accepted signature algorithm (RSASSA-PSS and others are refused). */
const SIG_HASH: Record<string, { hash: string; key: 'ec' | 'rsa' }> = {
  [OID.ecdsaSha256]: { hash: 'sha256', key: 'ec' },
  [OID.ecdsaSha384]: { hash: 'sha384', key: 'ec' },
  [OID.ecdsaSha512]: { hash: 'sha512', key: 'ec' },
  [OID.rsaSha256]: { hash: 'sha256', key: 'rsa' },
  [OID.rsaSha384]: { hash: 'sha384', key: 'rsa' },
  [OID.rsaSha512]: { hash: 'sha512', key: 'rsa' },
};

/** Refuse keys other than EC P-256/P-384 and RSA >= 2048 (ERR_CSR_WEAK_KEY). */
export function checkKeyStrength(key: KeyObject): void {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec' && (d?.namedCurve === 'prime256v1' || d?.namedCurve === 'secp384r1'))
    return;
  if (key.asymmetricKeyType === 'rsa' && (d?.modulusLength ?? 0) >= 2048) return;
  const what =
    key.asymmetricKeyType === 'rsa'
      ? `RSA ${d?.modulusLength ?? '?'} bits`
      : `${key.asymmetricKeyType ?? 'unknown'} ${d?.namedCurve ?? ''}`.trim();
  throw new SvidError('ERR_CSR_WEAK_KEY', `key ${what} refused: only EC P-256/P-384 or RSA >= 2048`);
}

export function parseCsr(der: Uint8Array): ParsedCsr {
  const bad = (why: string, cause?: unknown): SvidError =>
    new SvidError('ERR_CSR_MALFORMED', `CSR: ${why}`, cause === undefined ? undefined : { cause });
  if (!(der instanceof Uint8Array) || der.length === 0 || der.length > 16_384) throw bad('not DER bytes');
  let info: Buffer;
  let spki: Buffer;
  let algOid: string;
  let signature: Buffer;
  try {
    const outer = new DerReader(der, 'CSR');
    const req = new DerReader(outer.read(TAG.SEQUENCE, 'CertificationRequest').content, 'CSR');
    outer.end('CertificationRequest');
    const infoTlv = req.read(TAG.SEQUENCE, 'certificationRequestInfo');
    const alg = new DerReader(req.read(TAG.SEQUENCE, 'signatureAlgorithm').content, 'CSR');
    const sigBits = req.read(TAG.BIT_STRING, 'signature').content;
    req.end('CertificationRequest');
    algOid = oidText(alg.read(TAG.OID, 'algorithm').content);
    if (sigBits[0] !== 0) throw bad('signature has unused bits');
    signature = sigBits.subarray(1);
    const ir = new DerReader(infoTlv.content, 'CSR');
    const version = ir.read(TAG.INTEGER, 'version').content;
    if (version.length !== 1 || version[0] !== 0) throw bad('version must be 0');
    ir.read(TAG.SEQUENCE, 'subject');
    spki = ir.read(TAG.SEQUENCE, 'subjectPKInfo').raw;
    ir.read(0xa0, 'attributes');
    ir.end('certificationRequestInfo');
    info = infoTlv.raw;
  } catch (err) {
    if (err instanceof SvidError && err.code === 'ERR_CSR_MALFORMED') throw err;
    throw bad((err as Error).message, err);
  }
  const scheme = SIG_HASH[algOid];
  if (scheme === undefined) throw bad(`unsupported signature algorithm ${algOid}`);
  refuseExplicitCurve(spki);
  let publicKey: KeyObject;
  try {
    publicKey = importSpki(spki);
  } catch (cause) {
    throw bad('public key does not parse', cause);
  }
  checkKeyStrength(publicKey);
  if (publicKey.asymmetricKeyType !== scheme.key)
    throw bad(`signature algorithm ${algOid} does not fit the key`);
  let ok = false;
  try {
    ok = cryptoVerify(
      scheme.hash,
      info,
      scheme.key === 'ec' ? { key: publicKey, dsaEncoding: 'der' } : publicKey,
      signature,
    );
  } catch {
    ok = false;
  }
  if (!ok) throw new SvidError('ERR_CSR_SIGNATURE', 'CSR signature does not verify with its own key');
  return { spki, publicKey };
}

/** Build a CSR for `privateKey` (subject CN optional; SPIFFE IDs come from the issuer). */
export function createCsr(privateKey: KeyObject, commonName = 'edgeward'): Buffer {
  const alg = signatureAlgorithm(privateKey);
  const info = seq(Buffer.from([TAG.INTEGER, 1, 0]), name(commonName), spkiOf(privateKey), explicit(0));
  return signTbs(info, privateKey, alg);
}
