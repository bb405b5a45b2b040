/**
 * Object templates: the TCG EK templates (EK Credential Profile L-1, L-2, H-3), the ECC P-256
 * storage primary, the restricted ECC AK and the sealed-data object (brief §3.6, §5.1).
 * Byte-exactness matters: one bit or one `unique` size off gives a different key and name.
 */
import { TPM_ALG, TPM_ECC, TPMA_OBJECT } from './constants.ts';
import type { TpmtPublic } from './public.ts';

/** Policy A: PolicySecret(TPM_RH_ENDORSEMENT), SHA-256. */
export const EK_POLICY_A_SHA256 = Buffer.from(
  '837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa',
  'hex',
);
/** Policy B for SHA-384 (high-range templates). */
export const EK_POLICY_B_SHA384 = Buffer.from(
  'b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12',
  'hex',
);

const AES128_CFB = { alg: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB };
const AES256_CFB = { alg: TPM_ALG.AES, keyBits: 256, mode: TPM_ALG.CFB };
const NULL_SCHEME = { scheme: TPM_ALG.NULL };
const NULL_SYM = { alg: TPM_ALG.NULL };

/** 0x000300B2: fixedTPM, fixedParent, sensitiveDataOrigin, adminWithPolicy, restricted, decrypt. */
export const EK_LOW_ATTRIBUTES = 0x000300b2;
/** 0x000300F2: the low attributes plus userWithAuth. */
export const EK_HIGH_ATTRIBUTES = 0x000300f2;
/** 0x00050472: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA, restricted, sign. */
export const AK_ATTRIBUTES = 0x00050472;
/** 0x00030472: a restricted decryption (storage) key. */
export const SRK_ATTRIBUTES = 0x00030472;
/** 0x00000412: fixedTPM, fixedParent, noDA — sealed data authorised by policy only. */
export const SEALED_ATTRIBUTES = TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.noDA;

/** EK L-1: RSA-2048, SHA-256, AES-128-CFB, policy A, 256 zero bytes of unique. */
export function ekRsa2048Template(): TpmtPublic {
  return {
    type: TPM_ALG.RSA,
    nameAlg: TPM_ALG.SHA256,
    attributes: EK_LOW_ATTRIBUTES,
    authPolicy: EK_POLICY_A_SHA256,
    params: { type: TPM_ALG.RSA, symmetric: AES128_CFB, scheme: NULL_SCHEME, keyBits: 2048, exponent: 0 },
    unique: Buffer.alloc(256),
  };
}

/** EK L-2: ECC P-256, SHA-256, AES-128-CFB, policy A, 32+32 zero bytes of unique. */
export function ekEccP256Template(): TpmtPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    attributes: EK_LOW_ATTRIBUTES,
    authPolicy: EK_POLICY_A_SHA256,
    params: {
      type: TPM_ALG.ECC,
      symmetric: AES128_CFB,
      scheme: NULL_SCHEME,
      curve: TPM_ECC.NIST_P256,
      kdf: NULL_SCHEME,
    },
    unique: Buffer.alloc(64),
    eccX: Buffer.alloc(32),
    eccY: Buffer.alloc(32),
  };
}

/** EK H-3: ECC P-384, SHA-384, AES-256-CFB, userWithAuth, policy B, empty unique. */
export function ekEccP384Template(): TpmtPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA384,
    attributes: EK_HIGH_ATTRIBUTES,
    authPolicy: EK_POLICY_B_SHA384,
    params: {
      type: TPM_ALG.ECC,
      symmetric: AES256_CFB,
      scheme: NULL_SCHEME,
      curve: TPM_ECC.NIST_P384,
      kdf: NULL_SCHEME,
    },
    unique: Buffer.alloc(0),
    eccX: Buffer.alloc(0),
    eccY: Buffer.alloc(0),
  };
}

/** The TCG ECC P-256 storage root key template. */
export function srkEccP256Template(): TpmtPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    attributes: SRK_ATTRIBUTES,
    authPolicy: Buffer.alloc(0),
    params: {
      type: TPM_ALG.ECC,
      symmetric: AES128_CFB,
      scheme: NULL_SCHEME,
      curve: TPM_ECC.NIST_P256,
      kdf: NULL_SCHEME,
    },
    unique: Buffer.alloc(64),
    eccX: Buffer.alloc(32),
    eccY: Buffer.alloc(32),
  };
}

/** A restricted ECDSA-SHA256 P-256 signing key (the attestation key). */
export function akEccP256Template(): TpmtPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    attributes: AK_ATTRIBUTES,
    authPolicy: Buffer.alloc(0),
    params: {
      type: TPM_ALG.ECC,
      symmetric: NULL_SYM,
      scheme: { scheme: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256 },
      curve: TPM_ECC.NIST_P256,
      kdf: NULL_SCHEME,
    },
    unique: Buffer.alloc(0),
    eccX: Buffer.alloc(0),
    eccY: Buffer.alloc(0),
  };
}

/** A sealed data object authorised by `policy` only (no userWithAuth). */
export function sealedTemplate(policy: Uint8Array): TpmtPublic {
  return {
    type: TPM_ALG.KEYEDHASH,
    nameAlg: TPM_ALG.SHA256,
    attributes: SEALED_ATTRIBUTES,
    authPolicy: Buffer.from(policy),
    params: { type: TPM_ALG.KEYEDHASH, scheme: NULL_SCHEME },
    unique: Buffer.alloc(0),
  };
}

/**
 * 0x00040472: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA, sign — an
 * unrestricted signing key (signs external digests with a NULL ticket). noDA: its auth is the
 * empty password, so dictionary-attack accounting would only add TPM_RC_RETRY (brief §6 P1).
 */
export const SIGNING_KEY_ATTRIBUTES = 0x00040472;

/** An unrestricted ECDSA-SHA256 P-256 signing key (the delegated CA key; brief §3.6 table). */
export function eccSigningTemplate(): TpmtPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    attributes: SIGNING_KEY_ATTRIBUTES,
    authPolicy: Buffer.alloc(0),
    params: {
      type: TPM_ALG.ECC,
      symmetric: NULL_SYM,
      scheme: { scheme: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256 },
      curve: TPM_ECC.NIST_P256,
      kdf: NULL_SCHEME,
    },
    unique: Buffer.alloc(0),
    eccX: Buffer.alloc(0),
    eccY: Buffer.alloc(0),
  };
}
