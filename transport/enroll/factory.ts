/**
 * Factory-certificate enrollment: the device's TLS client certificate (from its manufacturer)
 * must chain to a configured manufacturer root and be valid now; the device id is read from a
 * configured field and, when an allow-list is configured, must be on it.
 *
 * @example
 * ```ts
 * const deviceId = factoryDeviceId(peerChain, { roots: [mfgRoot], idField: 'cn', allowList: ['sensor-1'] }, now);
 * ```
 */
import type { X509Certificate } from 'node:crypto';
import { TransportError } from '../errors.ts';

export interface FactoryOptions {
  readonly roots: readonly X509Certificate[];
  /** Where the device id is: the subject CN, the subject serialNumber attribute, or the first DNS SAN. */
  readonly idField: 'cn' | 'serialNumber' | 'dns';
  readonly allowList?: readonly string[];
}

const refuse = (msg: string): never => {
  throw new TransportError('ERR_ENROLL_FACTORY_REFUSED', msg);
};

function signedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function valid(c: X509Certificate, now: number): boolean {
  return Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo);
}

function field(cert: X509Certificate, idField: FactoryOptions['idField']): string | undefined {
  if (idField === 'dns') return /(?:^|, )DNS:([^,]+)/.exec(cert.subjectAltName ?? '')?.[1];
  const key = idField === 'cn' ? 'CN' : 'serialNumber';
  for (const line of cert.subject.split('\n'))
    if (line.startsWith(`${key}=`)) return line.slice(key.length + 1);
  return undefined;
}

/** The device id of a verified factory chain (leaf first). Throws `ERR_ENROLL_FACTORY_REFUSED`. */
export function factoryDeviceId(chain: readonly X509Certificate[], o: FactoryOptions, now: number): string {
  if (chain.length === 0) refuse('no factory certificate presented');
  let cur = chain[0] as X509Certificate;
  for (let i = 1; ; i++) {
    if (!valid(cur, now)) refuse('factory certificate chain is not valid now');
    const root = o.roots.find((r) => signedBy(cur, r));
    if (root !== undefined) {
      if (!valid(root, now)) refuse('manufacturer root is not valid now');
      break;
    }
    const next = chain[i];
    if (next === undefined || i > 4 || !next.ca || !signedBy(cur, next))
      refuse('factory certificate does not chain to a manufacturer root');
    cur = next as X509Certificate;
  }
  const leaf = chain[0] as X509Certificate;
  if (leaf.ca) refuse('a CA certificate is not a factory device certificate');
  const id = field(leaf, o.idField);
  if (id === undefined || !/^[A-Za-z0-9._-]{1,64}$/.test(id) || id === '.' || id === '..') {
    refuse(`factory certificate has no usable device id in ${o.idField}`);
  }
  if (o.allowList !== undefined && !o.allowList.includes(id as string))
    refuse(`device ${id} is not on the allow-list`);
  return id as string;
}
