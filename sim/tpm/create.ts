/**
 * Object creation shared by CreatePrimary and Create (Part 3 §24.1, §12.1): parse and check the
 * template and the sensitive-create area, then generate the key or sealed data from a byte
 * stream. For primaries the stream is KDFa(SHA-256, hierarchy seed, label, Name(template),
 * data ‖ counter), so the same seed, template and data always give the same object; for
 * ordinary objects it is the injected Random. RSA primes from a seeded stream are cached in the
 * state (the search costs tens of milliseconds).
 */

import { AttestorError } from '../../attestors/errors.ts';
import { digest, kdfa } from '../../attestors/tpm/crypto/kdf.ts';
import { objectName } from '../../attestors/tpm/crypto/name.ts';
import type { Reader } from '../../attestors/tpm/wire/buffer.ts';
import { HASHES, TPM_ALG, TPMA_OBJECT } from '../../attestors/tpm/wire/constants.ts';
import { marshalPublic, parsePublic, type TpmtPublic } from '../../attestors/tpm/wire/public.ts';
import { curveInfo, eccPoint, eccScalar, fromBig, rsaPrimes } from './keys.ts';
import { has } from './object.ts';
import { RC, rcParam } from './rc.ts';

export interface SensitiveCreate {
  readonly userAuth: Buffer;
  readonly data: Buffer;
}

/** TPM2B_SENSITIVE_CREATE: u16 size { userAuth TPM2B, data TPM2B }. */
export function readSensitiveCreate(r: Reader, param: number): SensitiveCreate {
  const inner = r.sized('inSensitive');
  const userAuth = inner.tpm2b('userAuth', 64);
  const data = inner.tpm2b('data', 256);
  if (inner.remaining !== 0) throw rcParam(RC.SIZE, param);
  return { userAuth, data };
}

/** TPM2B_PUBLIC, keeping the exact bytes (the Name hashes them). */
export function readInPublic(r: Reader, param: number): { pub: TpmtPublic; bytes: Buffer } {
  const bytes = r.tpm2b('inPublic', 1024);
  if (bytes.length === 0) throw rcParam(RC.SIZE, param);
  try {
    return { pub: parsePublic(bytes), bytes };
  } catch (err) {
    if (err instanceof AttestorError && err.code === 'ERR_ATTEST_PUBLIC_INVALID')
      throw rcParam(RC.TYPE, param);
    if (err instanceof AttestorError)
      throw rcParam(/trailing/.test(err.message) ? RC.SIZE : RC.INSUFFICIENT, param);
    throw err;
  }
}

const RSA_SIZES = new Set([1024, 2048, 3072]);

/** Template checks (Part 3 §12.1 "Create" and Part 2 object attribute rules); `p` = inPublic's number. */
export function validateTemplate(pub: TpmtPublic, p: number, sens?: SensitiveCreate): void {
  const a = pub.attributes;
  const hash = HASHES[pub.nameAlg];
  if (hash === undefined) throw rcParam(RC.HASH, p);
  if (pub.authPolicy.length !== 0 && pub.authPolicy.length !== hash.size) throw rcParam(RC.SIZE, p);
  if (sens !== undefined && sens.userAuth.length > hash.size) throw rcParam(RC.SIZE, 1);
  const sign = has(a, TPMA_OBJECT.sign);
  const decrypt = has(a, TPMA_OBJECT.decrypt);
  const restricted = has(a, TPMA_OBJECT.restricted);
  if (has(a, TPMA_OBJECT.fixedTPM) !== has(a, TPMA_OBJECT.fixedParent) && has(a, TPMA_OBJECT.fixedTPM))
    throw rcParam(RC.ATTRIBUTES, p);
  if (restricted && sign === decrypt) throw rcParam(RC.ATTRIBUTES, p);
  if ((a & 0xfff0f309) !== 0) throw rcParam(RC.RESERVED_BITS, p);
  const params = pub.params;
  if (params.type === TPM_ALG.KEYEDHASH) {
    if (sign || decrypt) throw rcParam(RC.ATTRIBUTES, p);
    if (params.scheme.scheme !== TPM_ALG.NULL) throw rcParam(RC.SCHEME, p);
    if (sens !== undefined) {
      if (has(a, TPMA_OBJECT.sensitiveDataOrigin) && sens.data.length !== 0) throw rcParam(RC.ATTRIBUTES, p);
      if (sens.data.length > 128) throw rcParam(RC.SIZE, 1);
    }
    return;
  }
  if (sens !== undefined && sens.data.length !== 0) throw rcParam(RC.SIZE, 1);
  if (restricted && decrypt) {
    const s = params.symmetric;
    if (s.alg !== TPM_ALG.AES || s.mode !== TPM_ALG.CFB || (s.keyBits !== 128 && s.keyBits !== 256))
      throw rcParam(RC.SYMMETRIC, p);
    if (params.scheme.scheme !== TPM_ALG.NULL) throw rcParam(RC.SCHEME, p);
  } else if (params.symmetric.alg !== TPM_ALG.NULL) {
    throw rcParam(RC.SYMMETRIC, p);
  }
  const sch = params.scheme.scheme;
  if (sch !== TPM_ALG.NULL) {
    const ok =
      params.type === TPM_ALG.ECC
        ? sign && sch === TPM_ALG.ECDSA
        : (sign && sch === TPM_ALG.RSASSA) || (decrypt && !sign && sch === TPM_ALG.OAEP);
    if (!ok || HASHES[params.scheme.hash ?? 0] === undefined) throw rcParam(RC.SCHEME, p);
  } else if (restricted && sign) {
    throw rcParam(RC.SCHEME, p);
  }
  if (params.type === TPM_ALG.RSA) {
    if (!RSA_SIZES.has(params.keyBits)) throw rcParam(RC.KEY_SIZE, p);
    if (params.exponent !== 0 && params.exponent !== 65537) throw rcParam(RC.VALUE, p);
  } else {
    try {
      curveInfo(params.curve);
    } catch {
      throw rcParam(RC.CURVE, p);
    }
    if (params.kdf.scheme !== TPM_ALG.NULL) throw rcParam(RC.KDF, p);
  }
}

/** Where key bytes come from: `(label, i, bytes)` → bytes; deterministic for primaries. */
export type KeyStream = (label: string, i: number, bytes: number) => Buffer;

export function seededStream(seed: Buffer, templateName: Buffer, data: Buffer): KeyStream {
  return (label, i, bytes) => {
    const ctr = Buffer.alloc(4);
    ctr.writeUInt32BE(i);
    return kdfa(TPM_ALG.SHA256, seed, label, templateName, Buffer.concat([data, ctr]), bytes * 8);
  };
}

export interface Generated {
  readonly pub: TpmtPublic;
  readonly pubBytes: Buffer;
  readonly name: Buffer;
  readonly authValue: Buffer;
  readonly seedValue: Buffer;
  readonly sensitive: Buffer;
}

/** RSA prime cache (hex key → hex "p:q"); present only for seeded (primary) generation. */
export interface PrimeCache {
  readonly key: string;
  readonly map: Map<string, string>;
}

/** Generate the object described by `tpl` (already validated) from `stream`. */
export function generate(
  tpl: TpmtPublic,
  sens: SensitiveCreate,
  stream: KeyStream,
  cache?: PrimeCache,
): Generated {
  const hashSize = (HASHES[tpl.nameAlg] as { size: number }).size;
  const seedValue = stream('SEED', 0, hashSize);
  let pub: TpmtPublic;
  let sensitive: Buffer;
  const params = tpl.params;
  if (params.type === TPM_ALG.ECC) {
    const { size } = curveInfo(params.curve);
    sensitive = eccScalar(params.curve, (i) => stream('ECC', i, size));
    const { x, y } = eccPoint(params.curve, sensitive);
    pub = { ...tpl, unique: Buffer.concat([x, y]), eccX: x, eccY: y };
  } else if (params.type === TPM_ALG.RSA) {
    const hit = cache === undefined ? undefined : cache.map.get(cache.key);
    let p: bigint;
    let q: bigint;
    if (hit !== undefined) {
      const [ph, qh] = hit.split(':');
      p = BigInt(`0x${ph}`);
      q = BigInt(`0x${qh}`);
    } else {
      let i = 0;
      ({ p, q } = rsaPrimes(params.keyBits, params.exponent, () => stream('RSA', i++, params.keyBits / 16)));
      cache?.map.set(cache.key, `${p.toString(16)}:${q.toString(16)}`);
    }
    const bytes = params.keyBits / 8;
    sensitive = fromBig(p, bytes / 2);
    pub = { ...tpl, unique: fromBig(p * q, bytes) };
  } else {
    const data = has(tpl.attributes, TPMA_OBJECT.sensitiveDataOrigin)
      ? stream('DATA', 0, hashSize)
      : sens.data;
    sensitive = Buffer.from(data);
    pub = { ...tpl, unique: digest(tpl.nameAlg, seedValue, data) };
  }
  const pubBytes = marshalPublic(pub);
  return { pub, pubBytes, name: objectName(pubBytes), authValue: sens.userAuth, seedValue, sensitive };
}

/** Re-check that a loaded public area belongs to its sensitive part (Load). */
export function bound(pub: TpmtPublic, seedValue: Buffer, sensitive: Buffer): boolean {
  const params = pub.params;
  try {
    if (params.type === TPM_ALG.ECC) {
      const { x, y } = eccPoint(params.curve, sensitive);
      return x.equals(Buffer.from(pub.eccX ?? [])) && y.equals(Buffer.from(pub.eccY ?? []));
    }
    if (params.type === TPM_ALG.RSA) {
      const n = BigInt(`0x${Buffer.from(pub.unique).toString('hex') || '0'}`);
      const p = BigInt(`0x${sensitive.toString('hex') || '0'}`);
      return p > 1n && n % p === 0n && sensitive.length * 2 === pub.unique.length;
    }
    return digest(pub.nameAlg, seedValue, sensitive).equals(Buffer.from(pub.unique));
  } catch {
    return false;
  }
}

/**
 * A primary object from `seed` and the exact template bytes (Part 1 "Primary Keys"): the same
 * seed, template and sensitive data always give the same key. `cache` holds RSA primes.
 */
export function derivePrimary(
  seed: Buffer,
  bytes: Buffer,
  tpl: TpmtPublic,
  sens: SensitiveCreate,
  cache?: Map<string, string>,
): Generated {
  const tname = objectName(bytes);
  const key = digest(TPM_ALG.SHA256, seed, tname, sens.data).toString('hex');
  return generate(
    tpl,
    sens,
    seededStream(seed, tname, sens.data),
    cache === undefined ? undefined : { key, map: cache },
  );
}
