/**
 * Verifier side: is this EK public area the certified EK, made from a TCG template? (brief §4.4).
 * The certificate's key alone is not enough: MakeCredential encrypts to the public area, so the
 * area must be one of the TCG EK templates (L-1 RSA-2048, L-2 ECC P-256, H-3 ECC P-384: attributes,
 * nameAlg, symmetric, authPolicy) with the certificate's key as `unique`. The check rebuilds the
 * expected TPMT_PUBLIC and compares bytes.
 *
 * @example
 * ```ts
 * const { template } = checkEkPublic(begin.ekPublic, parseEkCertificate(begin.ekCertificate));
 * ```
 */
import { X509Certificate } from 'node:crypto';
import { AttestorError } from '../../errors.ts';
import { TPM_ALG } from '../wire/constants.ts';
import { marshalPublic, parsePublic, type TpmtPublic } from '../wire/public.ts';
import { ekEccP256Template, ekEccP384Template, ekRsa2048Template } from '../wire/templates.ts';

export type EkTemplateName = 'L-1' | 'L-2' | 'H-3';

export interface CheckedEk {
  readonly template: EkTemplateName;
  readonly public: TpmtPublic;
}

function invalid(message: string, cause?: unknown): AttestorError {
  return new AttestorError('ERR_ATTEST_PUBLIC_INVALID', `EK public area: ${message}`, { cause });
}

/** The TPMT_PUBLIC the EK of `template` must have, with the key from the certificate as unique. */
function expected(template: EkTemplateName, jwk: Record<string, unknown>): TpmtPublic | undefined {
  const b = (k: string): Buffer => Buffer.from(String(jwk[k] ?? ''), 'base64url');
  const padTo = (v: Buffer, n: number): Buffer => Buffer.concat([Buffer.alloc(Math.max(0, n - v.length)), v]);
  if (template === 'L-1') {
    if (jwk.kty !== 'RSA' || b('n').length !== 256 || b('e').toString('hex') !== '010001') return undefined;
    return { ...ekRsa2048Template(), unique: b('n') };
  }
  const [t, size, crv] =
    template === 'L-2' ? [ekEccP256Template(), 32, 'P-256'] : [ekEccP384Template(), 48, 'P-384'];
  if (jwk.kty !== 'EC' || jwk.crv !== crv) return undefined;
  const x = padTo(b('x'), size);
  const y = padTo(b('y'), size);
  return { ...t, unique: Buffer.concat([x, y]), eccX: x, eccY: y };
}

export function checkEkPublic(ekPublic: Uint8Array, ekCertificateDer: Uint8Array): CheckedEk {
  let pub: TpmtPublic;
  try {
    pub = parsePublic(ekPublic);
  } catch (cause) {
    throw invalid('does not parse as TPMT_PUBLIC', cause);
  }
  let jwk: Record<string, unknown>;
  try {
    jwk = new X509Certificate(Buffer.from(ekCertificateDer)).publicKey.export({ format: 'jwk' }) as Record<
      string,
      unknown
    >;
  } catch (cause) {
    throw new AttestorError('ERR_ATTEST_EK_CERT_INVALID', 'EK certificate does not parse', { cause });
  }
  const given = Buffer.from(ekPublic);
  const candidates: EkTemplateName[] = pub.type === TPM_ALG.RSA ? ['L-1'] : ['L-2', 'H-3'];
  for (const template of candidates) {
    const want = expected(template, jwk);
    if (want !== undefined && marshalPublic(want).equals(given)) return { template, public: pub };
  }
  throw invalid('is not a TCG EK template (L-1, L-2, H-3) carrying the certificate key');
}
