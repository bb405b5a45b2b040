/**
 * TPM2_ActivateCredential (Part 3 §12.5; Part 1 §24 "Credential Protection"; brief §4.3):
 * recover the seed with the EK (RSA-OAEP with label "IDENTITY", or ECDH + KDFe), check the outer
 * HMAC over encIdentity ‖ Name(activated object) — so a credential made for another key fails
 * with TPM_RC_INTEGRITY — then decrypt the credential with AES-CFB under KDFa("STORAGE").
 * TPM2_MakeCredential (§12.6) is the TPM-side twin; it reuses the verifier's software
 * MakeCredential, so it is no independent check of that code (ActivateCredential above is).
 */
import { constants, privateDecrypt } from 'node:crypto';
import { kdfe } from '../../../attestors/tpm/crypto/kdf.ts';
import { makeCredential } from '../../../attestors/tpm/verify/make-credential.ts';
import { Reader } from '../../../attestors/tpm/wire/buffer.ts';
import { HASHES, TPM_ALG, TPM_CC, TPMA_OBJECT } from '../../../attestors/tpm/wire/constants.ts';
import { eccSharedX } from '../keys.ts';
import { has, privateKeyOf, type SimObject } from '../object.ts';
import { RC, rc, rcHandle, rcParam } from '../rc.ts';
import type { CommandSpec } from '../spec.ts';
import { unwrapOuter } from '../wrap.ts';

const IDENTITY = Buffer.from('IDENTITY\0', 'latin1');

/** The credential seed hidden in `secret` for protector `ek`. */
function recoverSeed(ek: SimObject, secret: Buffer, hashSize: number, hashNode: string): Buffer {
  const p = ek.pub.params;
  if (p.type === TPM_ALG.RSA) {
    if (secret.length !== p.keyBits / 8) throw rcParam(RC.SIZE, 2);
    let seed: Buffer;
    try {
      seed = privateDecrypt(
        {
          key: privateKeyOf(ek),
          padding: constants.RSA_PKCS1_OAEP_PADDING,
          oaepHash: hashNode,
          oaepLabel: IDENTITY,
        },
        secret,
      );
    } catch {
      // libtpms answers an undecryptable secret with TPM_RC_FAILURE (brief §3.17) and keeps working.
      throw rc(RC.FAILURE);
    }
    if (seed.length > hashSize) throw rcParam(RC.VALUE, 2);
    return seed;
  }
  if (p.type !== TPM_ALG.ECC) throw rcHandle(RC.TYPE, 2);
  const r = new Reader(secret, 'TPMS_ECC_POINT');
  let x: Buffer;
  let y: Buffer;
  try {
    x = r.tpm2b('x', 66);
    y = r.tpm2b('y', 66);
    r.done();
  } catch {
    throw rcParam(RC.SIZE, 2);
  }
  let z: Buffer;
  try {
    z = eccSharedX(p.curve, ek.sensitive, x, y);
  } catch {
    throw rcParam(RC.ECC_POINT, 2);
  }
  return kdfe(ek.pub.nameAlg, z, 'IDENTITY', x, Buffer.from(ek.pub.eccX ?? []), hashSize * 8);
}

export const credentialCommands: readonly CommandSpec[] = [
  {
    cc: TPM_CC.ActivateCredential,
    name: 'ActivateCredential',
    handles: ['object', 'object'],
    auth: ['admin', 'user'],
    run(ctx) {
      const blob = ctx.at(1).tpm2b('credentialBlob', 1024);
      const secret = ctx.at(2).tpm2b('secret', 1024);
      ctx.end();
      const [activateHandle, keyHandle] = ctx.handles as [number, number];
      const obj = ctx.tpm.object(activateHandle) as SimObject;
      const ek = ctx.tpm.object(keyHandle) as SimObject;
      const a = ek.pub.attributes;
      if (!has(a, TPMA_OBJECT.restricted) || !has(a, TPMA_OBJECT.decrypt) || has(a, TPMA_OBJECT.sign))
        throw rcHandle(RC.TYPE, 2);
      const hash = HASHES[ek.pub.nameAlg] as { size: number; node: string };
      const seed = recoverSeed(ek, secret, hash.size, hash.node);
      const p = ek.pub.params;
      const keyBits = p.type === TPM_ALG.KEYEDHASH ? 128 : (p.symmetric.keyBits ?? 128);
      const plain = unwrapOuter({ hashAlg: ek.pub.nameAlg, seed, keyBits }, obj.name, blob);
      if (plain === 'insufficient') throw rcParam(RC.INSUFFICIENT, 1);
      if (plain === 'integrity') throw rcParam(RC.INTEGRITY, 1);
      if (plain === 'size' || plain.length > hash.size) throw rcParam(RC.SIZE, 1);
      ctx.out.tpm2b(plain);
    },
  },
  {
    cc: TPM_CC.MakeCredential,
    name: 'MakeCredential',
    handles: ['object'],
    auth: [],
    run(ctx) {
      const credential = ctx.at(1).tpm2b('credential', 64);
      const name = ctx.at(2).tpm2b('objectName', 68);
      ctx.end();
      const ek = ctx.tpm.object(ctx.handles[0] as number) as SimObject;
      const a = ek.pub.attributes;
      if (!has(a, TPMA_OBJECT.restricted) || !has(a, TPMA_OBJECT.decrypt) || has(a, TPMA_OBJECT.sign))
        throw rcHandle(RC.TYPE, 1);
      const size = (HASHES[ek.pub.nameAlg] as { size: number }).size;
      if (credential.length === 0 || credential.length > size) throw rcParam(RC.SIZE, 1);
      const alg = name.length >= 2 ? HASHES[name.readUInt16BE(0)] : undefined;
      if (alg === undefined || name.length !== 2 + alg.size) throw rcParam(RC.SIZE, 2);
      const mc = makeCredential(ek.pubBytes, name, credential, ctx.tpm.config.random);
      ctx.out.tpm2b(mc.credentialBlob).tpm2b(mc.encryptedSecret);
    },
  },
];
