/**
 * Object names (Part 1 "Names"): nameAlg ‖ H_nameAlg(TPMT_PUBLIC bytes), and the conversion of
 * a public area into a node:crypto public key. Always compute a name from the public area you
 * were given; never trust a name someone sent.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { AttestorError } from '../../errors.ts';
import { CURVES, TPM_ALG } from '../wire/constants.ts';
import { marshalPublic, type TpmtPublic } from '../wire/public.ts';
import { digest } from './kdf.ts';

export function objectName(pub: TpmtPublic | Uint8Array): Buffer {
  const bytes = pub instanceof Uint8Array ? pub : marshalPublic(pub);
  const nameAlg = pub instanceof Uint8Array ? Buffer.from(bytes).readUInt16BE(2) : pub.nameAlg;
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(nameAlg);
  return Buffer.concat([alg, digest(nameAlg, bytes)]);
}

/** The 4-byte name of a PCR, session or permanent handle. */
export function handleName(handle: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(handle >>> 0);
  return b;
}

const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

/** The public key of an RSA or ECC public area. */
export function publicKeyOf(pub: TpmtPublic): KeyObject {
  const p = pub.params;
  if (p.type === TPM_ALG.RSA) {
    const e = p.exponent === 0 ? 65537 : p.exponent;
    const eb = Buffer.alloc(4);
    eb.writeUInt32BE(e);
    let i = 0;
    while (i < 3 && eb[i] === 0) i++;
    return createPublicKey({
      key: { kty: 'RSA', n: b64u(pub.unique), e: b64u(eb.subarray(i)) },
      format: 'jwk',
    });
  }
  if (p.type === TPM_ALG.ECC) {
    const curve = CURVES[p.curve];
    if (curve === undefined)
      throw new AttestorError('ERR_ATTEST_PUBLIC_INVALID', `unsupported curve 0x${p.curve.toString(16)}`);
    const pad = (b: Uint8Array | undefined): Buffer => {
      const v = Buffer.from(b ?? []);
      if (v.length > curve.size)
        throw new AttestorError('ERR_ATTEST_PUBLIC_INVALID', 'ECC coordinate longer than the curve');
      return Buffer.concat([Buffer.alloc(curve.size - v.length), v]);
    };
    try {
      return createPublicKey({
        key: { kty: 'EC', crv: curve.jwk, x: b64u(pad(pub.eccX)), y: b64u(pad(pub.eccY)) },
        format: 'jwk',
      });
    } catch (cause) {
      throw new AttestorError('ERR_ATTEST_PUBLIC_INVALID', 'ECC point is not on the curve', { cause });
    }
  }
  throw new AttestorError('ERR_ATTEST_PUBLIC_INVALID', 'public area has no asymmetric key');
}
