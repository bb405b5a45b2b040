/**
 * Verifier side: EK certificates. `parseEkCertificate` takes the bytes of an EK certificate NV
 * index and returns exactly one DER certificate, tolerating the TCG PC-Client header
 * (`10 01 <u16 length>`) and trailing padding some TPMs store (brief §3.8, §6 P19).
 * `verifyEkChain` builds the path leaf → intermediates → a configured manufacturer root and checks
 * signatures, CA flags and validity at `now` (Node has no path builder; brief §2.3).
 *
 * @example
 * ```ts
 * const der = parseEkCertificate(nvBytes);
 * verifyEkChain(der, [rootCa], [intermediate], clock.now());
 * ```
 */
import { X509Certificate } from 'node:crypto';
import { readSpan, type Span } from '../../../runtime/spiffe/der.ts';
import { AttestorError } from '../../errors.ts';

const MAX_DEPTH = 6;

function malformed(message: string, cause?: unknown): AttestorError {
  return new AttestorError('ERR_ATTEST_EK_CERT_INVALID', `EK certificate: ${message}`, { cause });
}

/** The DER certificate inside EK certificate NV bytes (header and padding removed). */
export function parseEkCertificate(nvBytes: Uint8Array): Buffer {
  let body = Buffer.from(nvBytes);
  if (body.length >= 4 && body[0] === 0x10 && body[1] === 0x01) {
    const len = body.readUInt16BE(2);
    if (4 + len > body.length) throw malformed('PC-Client header length exceeds the NV data');
    body = body.subarray(4, 4 + len);
  }
  // The certificate is the first DER element; NV indices are often padded after it.
  let span: Span;
  try {
    span = readSpan(body, 0, body.length, 'EK certificate', 'certificate');
  } catch (cause) {
    throw malformed('is not one whole DER element', cause);
  }
  if (span.tag !== 0x30) throw malformed('does not start with a DER SEQUENCE');
  const der = Buffer.from(body.subarray(0, span.end));
  try {
    new X509Certificate(der);
  } catch (cause) {
    throw malformed('is not an X.509 certificate', cause);
  }
  return der;
}

function validAt(cert: X509Certificate, now: number, what: string): void {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (!(now >= from && now <= to))
    throw new AttestorError(
      'ERR_ATTEST_EK_CHAIN',
      `${what} (${cert.subject.replace(/\n/g, ', ')}) is not valid at ${new Date(now).toISOString()}`,
    );
}

function signedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.checkIssued(issuer) && issuer.ca && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/**
 * Verify that `certDer` chains to one of `roots` through `intermediates`, all valid at `now`.
 * Returns the path, leaf first, root last.
 */
export function verifyEkChain(
  certDer: Uint8Array,
  roots: readonly X509Certificate[],
  intermediates: readonly X509Certificate[],
  now: number,
): X509Certificate[] {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(Buffer.from(certDer));
  } catch (cause) {
    throw malformed('is not an X.509 certificate', cause);
  }
  if (leaf.ca) throw new AttestorError('ERR_ATTEST_EK_CHAIN', 'EK certificate is a CA certificate');
  validAt(leaf, now, 'EK certificate');
  const path = [leaf];
  let current = leaf;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const root = roots.find((r) => signedBy(current, r));
    if (root !== undefined) {
      validAt(root, now, 'root');
      path.push(root);
      return path;
    }
    const next = intermediates.find((c) => !path.includes(c) && signedBy(current, c));
    if (next === undefined) break;
    validAt(next, now, 'intermediate');
    path.push(next);
    current = next;
  }
  throw new AttestorError(
    'ERR_ATTEST_EK_CHAIN',
    `EK certificate issued by '${current.issuer.replace(/\n/g, ', ')}' does not chain to a configured root`,
  );
}
