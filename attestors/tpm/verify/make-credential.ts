/**
 * Verifier side: TPM2_MakeCredential in software (Part 1 §24 "Credential Protection"; brief §4.3).
 * The credential is encrypted so that only the TPM holding the EK can recover it, and only for an
 * object whose Name is `akName` (ActivateCredential checks the Name through the outer HMAC).
 *
 * The EK's own nameAlg and symmetric key size are used (SHA-256/AES-128 for L-1/L-2,
 * SHA-384/AES-256 for H-3): the TPM derives with the protector's parameters, never the AK's.
 *
 * @example
 * ```ts
 * const secret = random.bytes(32);
 * const { credentialBlob, encryptedSecret } = makeCredential(ekPublic, akName, secret, random);
 * ```
 */
import { constants, createCipheriv, createECDH, createHmac, publicEncrypt } from 'node:crypto';
import type { Random } from '../../../runtime/core/random.ts';
import { AttestorError } from '../../errors.ts';
import { kdfa, kdfe } from '../crypto/kdf.ts';
import { publicKeyOf } from '../crypto/name.ts';
import { Writer } from '../wire/buffer.ts';
import { CURVES, HASHES, TPM_ALG } from '../wire/constants.ts';
import { parsePublic, type TpmtPublic } from '../wire/public.ts';

export interface MadeCredential {
  /** TPM2B_ID_OBJECT contents: u16 dlen ‖ outer HMAC ‖ encrypted identity. */
  readonly credentialBlob: Buffer;
  /** TPM2B_ENCRYPTED_SECRET contents: OAEP ciphertext (RSA) or TPMS_ECC_POINT (ECC). */
  readonly encryptedSecret: Buffer;
}

function invalid(message: string, cause?: unknown): AttestorError {
  return new AttestorError('ERR_ATTEST_PUBLIC_INVALID', `EK public area: ${message}`, { cause });
}

/** Seed and encrypted secret: RSA-OAEP with label "IDENTITY\0" or ECDH + KDFe (Annex B.10 / C). */
function secretFor(ek: TpmtPublic, hashAlg: number, dlen: number, random: Random): [Buffer, Buffer] {
  const p = ek.params;
  if (p.type === TPM_ALG.RSA) {
    const seed = random.bytes(dlen);
    const enc = publicEncrypt(
      {
        key: publicKeyOf(ek),
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: HASHES[hashAlg]?.node as string,
        oaepLabel: Buffer.from('IDENTITY\0', 'ascii'),
      },
      seed,
    );
    return [seed, enc];
  }
  if (p.type === TPM_ALG.ECC) {
    const curve = CURVES[p.curve];
    if (curve === undefined) throw invalid(`unsupported curve 0x${p.curve.toString(16)}`);
    publicKeyOf(ek); // the EK point must be on the curve
    const pad = (b: Uint8Array): Buffer => Buffer.concat([Buffer.alloc(curve.size - b.length), b]);
    const ekX = pad(ek.eccX ?? new Uint8Array());
    const ekPoint = Buffer.concat([Buffer.from([4]), ekX, pad(ek.eccY ?? new Uint8Array())]);
    const ecdh = createECDH(curve.node);
    for (let attempt = 0; ; attempt++) {
      try {
        ecdh.setPrivateKey(random.bytes(curve.size));
        break;
      } catch (cause) {
        // out of range for the curve order: draw again (vanishingly rare)
        if (attempt > 16) throw new TypeError('random source gives no valid ECC private key', { cause });
      }
    }
    const z = ecdh.computeSecret(ekPoint);
    const eph = ecdh.getPublicKey();
    const ephX = eph.subarray(1, 1 + curve.size);
    const ephY = eph.subarray(1 + curve.size);
    const seed = kdfe(hashAlg, z, 'IDENTITY', ephX, ekX, dlen * 8);
    return [seed, new Writer().tpm2b(ephX).tpm2b(ephY).finish()];
  }
  throw invalid('not an RSA or ECC key');
}

export function makeCredential(
  ekPublic: Uint8Array,
  akName: Uint8Array,
  credential: Uint8Array,
  random: Random,
): MadeCredential {
  let ek: TpmtPublic;
  try {
    ek = parsePublic(ekPublic);
  } catch (cause) {
    throw invalid('does not parse as TPMT_PUBLIC', cause);
  }
  const hash = HASHES[ek.nameAlg];
  if (hash === undefined) throw invalid(`nameAlg 0x${ek.nameAlg.toString(16)} unsupported`);
  if (akName.length !== 2 + (HASHES[Buffer.from(akName).readUInt16BE(0)]?.size ?? -1))
    throw new AttestorError('ERR_ATTEST_CREDENTIAL', 'AK name is not nameAlg ‖ digest');
  if (credential.length === 0 || credential.length > hash.size)
    throw new AttestorError('ERR_ATTEST_CREDENTIAL', `credential must be 1..${hash.size} bytes`);
  const sym = ek.params.type === TPM_ALG.KEYEDHASH ? undefined : ek.params.symmetric;
  if (sym?.alg !== TPM_ALG.AES || sym.mode !== TPM_ALG.CFB || (sym.keyBits !== 128 && sym.keyBits !== 256))
    throw invalid('EK symmetric must be AES-128/256-CFB');
  try {
    const [seed, encSecret] = secretFor(ek, ek.nameAlg, hash.size, random);
    const symKey = kdfa(ek.nameAlg, seed, 'STORAGE', akName, new Uint8Array(), sym.keyBits);
    const plain = new Writer().tpm2b(credential).finish();
    const cipher = createCipheriv(`aes-${sym.keyBits}-cfb`, symKey, Buffer.alloc(16));
    const encIdentity = Buffer.concat([cipher.update(plain), cipher.final()]);
    const hmacKey = kdfa(ek.nameAlg, seed, 'INTEGRITY', new Uint8Array(), new Uint8Array(), hash.size * 8);
    const outerHmac = createHmac(hash.node, hmacKey).update(encIdentity).update(akName).digest();
    return {
      credentialBlob: new Writer().tpm2b(outerHmac).bytes(encIdentity).finish(),
      encryptedSecret: encSecret,
    };
  } catch (cause) {
    if (cause instanceof AttestorError || cause instanceof TypeError) throw cause;
    throw invalid('key unusable for MakeCredential', cause);
  }
}
