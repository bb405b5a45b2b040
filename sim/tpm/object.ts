/**
 * A TPM object as the simulator holds it: the public area (bytes kept verbatim, since the Name
 * hashes them), the sensitive part (authValue, seedValue, private scalar / RSA prime / sealed
 * data) and where it lives (hierarchy, qualified name). Private keys are rebuilt lazily from the
 * sensitive part and cached per object.
 */
import type { KeyObject } from 'node:crypto';
import { digest } from '../../attestors/tpm/crypto/kdf.ts';
import { TPM_ALG } from '../../attestors/tpm/wire/constants.ts';
import type { TpmtPublic } from '../../attestors/tpm/wire/public.ts';
import { eccPrivateKey, rsaPrivateKey, toBig } from './keys.ts';

export interface SimObject {
  readonly pub: TpmtPublic;
  readonly pubBytes: Buffer;
  readonly name: Buffer;
  readonly qualifiedName: Buffer;
  /** TPM_RH_ENDORSEMENT, OWNER, PLATFORM or NULL. */
  readonly hierarchy: number;
  readonly authValue: Buffer;
  /** Protection seed of a storage parent; obfuscation value of a keyed-hash object. */
  readonly seedValue: Buffer;
  /** ECC: private scalar; RSA: the larger prime; KEYEDHASH: the sealed data. */
  readonly sensitive: Buffer;
}

/** QN = nameAlg ‖ H(parent QN ‖ Name); a primary's parent QN is the hierarchy handle. */
export function qualifiedNameOf(parentQn: Uint8Array, name: Buffer): Buffer {
  const alg = name.readUInt16BE(0);
  return Buffer.concat([name.subarray(0, 2), digest(alg, parentQn, name)]);
}

const keys = new WeakMap<SimObject, KeyObject>();

/** The node:crypto private key of an RSA or ECC object. */
export function privateKeyOf(obj: SimObject): KeyObject {
  const cached = keys.get(obj);
  if (cached !== undefined) return cached;
  const p = obj.pub.params;
  let key: KeyObject;
  if (p.type === TPM_ALG.ECC) key = eccPrivateKey(p.curve, obj.sensitive);
  else if (p.type === TPM_ALG.RSA)
    key = rsaPrivateKey(toBig(obj.pub.unique), toBig(obj.sensitive), p.exponent);
  else throw new TypeError('object has no asymmetric key');
  keys.set(obj, key);
  return key;
}

export const has = (attrs: number, bit: number): boolean => (attrs & bit) !== 0;
