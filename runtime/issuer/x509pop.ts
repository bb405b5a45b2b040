/**
 * x509pop attestation, verifier side: the gateway shows a factory certificate chain that must
 * lead to a configured root (every certificate valid now, intermediates CAs, the leaf not),
 * and proves possession of the leaf's key by signing `x509popSignedData(nonce, csrSpki)`
 * (`runtime/svid/pop.ts`). Its gateway name comes from the leaf's CN or serial.
 *
 * @example
 * ```ts
 * const { leaf, identity } = verifyFactoryChain(chain, roots, now, 'cn');
 * verifyPossession(leaf, nonce, csrSpki, signature); // throws ERR_ISSUER_POP_INVALID
 * ```
 */
import { verify, X509Certificate } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import { normalizeSerial } from '../spiffe/cert-facts.ts';
import { isPathSegment } from '../spiffe/id.ts';
import { x509popSignedData } from '../svid/pop.ts';

const MAX_DEPTH = 8;

function validAt(c: X509Certificate, now: number): boolean {
  return Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo);
}

function signedBy(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return parent.ca && child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

export function verifyFactoryChain(
  chain: readonly Uint8Array[],
  roots: readonly X509Certificate[],
  now: number,
  nameFrom: 'cn' | 'serial',
): { leaf: X509Certificate; identity: string } {
  const bad = (why: string, cause?: unknown): IssuerError =>
    new IssuerError('ERR_ISSUER_CHAIN_INVALID', `factory certificate: ${why}`, {}, { cause });
  let certs: X509Certificate[];
  try {
    certs = chain.map((d) => new X509Certificate(Buffer.from(d)));
  } catch (cause) {
    throw bad('chain holds something that is not a certificate', cause);
  }
  const [leaf, ...intermediates] = certs;
  if (leaf === undefined) throw bad('empty chain');
  if (leaf.ca) throw bad('the leaf is a CA certificate');
  let current = leaf;
  const used = new Set<X509Certificate>();
  for (let depth = 0; ; depth++) {
    if (!validAt(current, now)) throw bad(`'${current.subject.replace(/\n/g, ', ')}' is not valid now`);
    const root = roots.find((r) => signedBy(current, r));
    if (root !== undefined) {
      if (!validAt(root, now)) throw bad('the root is not valid now');
      break;
    }
    const next = intermediates.find((c) => !used.has(c) && signedBy(current, c));
    if (next === undefined || depth >= MAX_DEPTH) throw bad('does not chain to a configured root');
    used.add(next);
    current = next;
  }
  const identity =
    nameFrom === 'serial' ? normalizeSerial(leaf.serialNumber) : (/^CN=(.*)$/m.exec(leaf.subject)?.[1] ?? '');
  if (!isPathSegment(identity) || identity.length > 64)
    throw bad(`the ${nameFrom} '${identity.slice(0, 80)}' is not usable as a gateway name`);
  return { leaf, identity };
}

export function verifyPossession(
  leaf: X509Certificate,
  nonce: Uint8Array,
  csrSpki: Uint8Array,
  signature: Uint8Array,
): void {
  let ok = false;
  try {
    const key = leaf.publicKey;
    ok = verify(
      'sha256',
      x509popSignedData(nonce, csrSpki),
      key.asymmetricKeyType === 'ec' ? { key, dsaEncoding: 'der' } : key,
      signature,
    );
  } catch {
    ok = false;
  }
  if (!ok)
    throw new IssuerError(
      'ERR_ISSUER_POP_INVALID',
      'proof of possession does not verify with the factory key',
    );
}
