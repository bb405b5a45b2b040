/**
 * What identity a CSR asks for. The signer ignores a CSR's subject (the SPIFFE ID comes from the
 * token, the factory certificate or the current device certificate), but a CSR that names
 * another device is refused rather than silently signed for the authenticated one: a subject
 * common name other than the device id, or a URI SAN (in an extensionRequest) other than the
 * SPIFFE ID the gateway would issue, is `ERR_ENROLL_CSR_IDENTITY`. A CSR naming nothing is fine.
 *
 * @example
 * ```ts
 * assertCsrNames(csrDer, 'sensor-1', 'spiffe://example.org/gateway/gw-1/device/sensor-1');
 * ```
 */
import { DerReader, oidText, TAG } from '../../runtime/spiffe/der.ts';
import { TransportError } from '../errors.ts';

const OID_CN = '2.5.4.3';
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const OID_SAN = '2.5.29.17';
/** GeneralName uniformResourceIdentifier [6] IMPLICIT IA5String. */
const URI_TAG = 0x86;

export interface CsrNames {
  readonly commonNames: readonly string[];
  readonly uris: readonly string[];
}

/** Common names of the subject and URI SANs of a CSR (DER already verified by `parseCsr`). */
export function csrNames(der: Uint8Array): CsrNames {
  const commonNames: string[] = [];
  const uris: string[] = [];
  const outer = new DerReader(new DerReader(der, 'CSR').read(TAG.SEQUENCE).content, 'CSR');
  const info = new DerReader(outer.read(TAG.SEQUENCE).content, 'CSR');
  info.read(TAG.INTEGER, 'version');
  const subject = new DerReader(info.read(TAG.SEQUENCE, 'subject').content, 'CSR');
  while (!subject.done) {
    const rdn = new DerReader(subject.read(TAG.SET, 'RDN').content, 'CSR');
    while (!rdn.done) {
      const atv = new DerReader(rdn.read(TAG.SEQUENCE, 'attribute').content, 'CSR');
      const type = oidText(atv.read(TAG.OID).content);
      const value = atv.read();
      if (type === OID_CN) commonNames.push(value.content.toString('utf8'));
    }
  }
  info.read(TAG.SEQUENCE, 'subjectPKInfo');
  const attrs = info.optional(0xa0, 'attributes');
  const ar = new DerReader(attrs?.content ?? Buffer.alloc(0), 'CSR');
  while (!ar.done) {
    const attr = new DerReader(ar.read(TAG.SEQUENCE, 'attribute').content, 'CSR');
    if (oidText(attr.read(TAG.OID).content) !== OID_EXTENSION_REQUEST) continue;
    const values = new DerReader(attr.read(TAG.SET).content, 'CSR');
    while (!values.done) {
      const exts = new DerReader(values.read(TAG.SEQUENCE, 'extensions').content, 'CSR');
      while (!exts.done) {
        const ext = new DerReader(exts.read(TAG.SEQUENCE, 'extension').content, 'CSR');
        const id = oidText(ext.read(TAG.OID).content);
        ext.optional(TAG.BOOLEAN);
        const value = ext.read(TAG.OCTET_STRING).content;
        if (id !== OID_SAN) continue;
        const names = new DerReader(new DerReader(value, 'CSR').read(TAG.SEQUENCE).content, 'CSR');
        while (!names.done) {
          const n = names.read();
          if (n.tag === URI_TAG) uris.push(n.content.toString('latin1'));
        }
      }
    }
  }
  return { commonNames, uris };
}

/** Throws `ERR_ENROLL_CSR_IDENTITY` when the CSR names another identity than `deviceId` / `spiffeId`. */
export function assertCsrNames(der: Uint8Array, deviceId: string, spiffeId: string): void {
  let names: CsrNames;
  try {
    names = csrNames(der);
  } catch (cause) {
    throw new TransportError('ERR_ENROLL_CSR_INVALID', `CSR: ${(cause as Error).message}`, { cause });
  }
  const cn = names.commonNames.find((c) => c !== deviceId);
  if (cn !== undefined)
    throw new TransportError(
      'ERR_ENROLL_CSR_IDENTITY',
      `the CSR asks for CN=${cn.slice(0, 80)}, not this device (${deviceId})`,
    );
  const uri = names.uris.find((u) => u !== spiffeId);
  if (uri !== undefined)
    throw new TransportError(
      'ERR_ENROLL_CSR_IDENTITY',
      `the CSR asks for ${uri.slice(0, 200)}, not ${spiffeId}`,
    );
}
