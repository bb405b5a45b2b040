/**
 * TPM 2.0 constants used by edgeward's client and simulator (Part 2 §6; values checked against
 * swtpm 0.7.1, see shared design brief §1.6). Plain objects, not enums (erasableSyntaxOnly).
 */

export const TPM_ST = {
  NO_SESSIONS: 0x8001,
  SESSIONS: 0x8002,
  ATTEST_CERTIFY: 0x8017,
  ATTEST_QUOTE: 0x8018,
  ATTEST_CREATION: 0x801a,
  CREATION: 0x8021,
  VERIFIED: 0x8022,
  AUTH_SECRET: 0x8023,
  HASHCHECK: 0x8024,
} as const;

export const TPM_CC = {
  EvictControl: 0x120,
  PCR_Reset: 0x13d,
  CreatePrimary: 0x131,
  Startup: 0x144,
  Shutdown: 0x145,
  ActivateCredential: 0x147,
  Certify: 0x148,
  NV_Read: 0x14e,
  PolicySecret: 0x151,
  Create: 0x153,
  Load: 0x157,
  Quote: 0x158,
  Sign: 0x15d,
  Unseal: 0x15e,
  ContextLoad: 0x161,
  ContextSave: 0x162,
  FlushContext: 0x165,
  LoadExternal: 0x167,
  MakeCredential: 0x168,
  NV_ReadPublic: 0x169,
  ReadPublic: 0x173,
  StartAuthSession: 0x176,
  GetCapability: 0x17a,
  GetRandom: 0x17b,
  PCR_Read: 0x17e,
  PolicyPCR: 0x17f,
  PolicyRestart: 0x180,
  PCR_Extend: 0x182,
  PolicyGetDigest: 0x189,
} as const;
export type TpmCommandCode = (typeof TPM_CC)[keyof typeof TPM_CC];

export const TPM_RH = {
  OWNER: 0x40000001,
  NULL: 0x40000007,
  PW: 0x40000009,
  LOCKOUT: 0x4000000a,
  ENDORSEMENT: 0x4000000b,
  PLATFORM: 0x4000000c,
} as const;

/** Handle type = the top byte (Part 2 §7.2). */
export const TPM_HT = {
  PCR: 0x00,
  NV_INDEX: 0x01,
  HMAC_SESSION: 0x02,
  POLICY_SESSION: 0x03,
  PERMANENT: 0x40,
  TRANSIENT: 0x80,
  PERSISTENT: 0x81,
} as const;

export const TPM_ALG = {
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  KEYEDHASH: 0x0008,
  XOR: 0x000a,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CFB: 0x0043,
} as const;

export const TPM_ECC = { NIST_P256: 0x0003, NIST_P384: 0x0004, NIST_P521: 0x0005 } as const;

export const TPM_SU = { CLEAR: 0x0000, STATE: 0x0001 } as const;
export const TPM_SE = { HMAC: 0x00, POLICY: 0x01, TRIAL: 0x03 } as const;
export const TPM_GENERATED_VALUE = 0xff544347;

export const TPM_CAP = {
  ALGS: 0,
  HANDLES: 1,
  COMMANDS: 2,
  PCRS: 5,
  TPM_PROPERTIES: 6,
  PCR_PROPERTIES: 7,
  ECC_CURVES: 8,
} as const;

export const TPM_PT = {
  MANUFACTURER: 0x105,
  VENDOR_STRING_1: 0x106,
  VENDOR_STRING_2: 0x107,
  VENDOR_STRING_3: 0x108,
  VENDOR_STRING_4: 0x109,
  FIRMWARE_VERSION_1: 0x10b,
  FIRMWARE_VERSION_2: 0x10c,
  INPUT_BUFFER: 0x10d,
  PCR_COUNT: 0x112,
  PCR_SELECT_MIN: 0x113,
  MAX_COMMAND_SIZE: 0x11e,
  MAX_RESPONSE_SIZE: 0x11f,
  MAX_DIGEST: 0x120,
  NV_BUFFER_MAX: 0x12c,
  PERMANENT: 0x200,
  STARTUP_CLEAR: 0x201,
  LOCKOUT_COUNTER: 0x20e,
} as const;

/** TPMA_OBJECT bits (Part 2 §8.3.2). */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;

/** TPMA_SESSION bits (Part 2 §8.4). */
export const TPMA_SESSION = {
  continueSession: 1 << 0,
  auditExclusive: 1 << 1,
  auditReset: 1 << 2,
  decrypt: 1 << 5,
  encrypt: 1 << 6,
  audit: 1 << 7,
} as const;

/** TPMA_NV bits used by EK certificate indices (Part 2 §13.4). */
export const TPMA_NV = {
  PPWRITE: 1 << 0,
  OWNERWRITE: 1 << 1,
  AUTHWRITE: 1 << 2,
  WRITELOCKED: 1 << 11,
  WRITEDEFINE: 1 << 13,
  PPREAD: 1 << 16,
  OWNERREAD: 1 << 17,
  AUTHREAD: 1 << 18,
  NO_DA: 1 << 25,
  WRITTEN: 1 << 29,
  PLATFORMCREATE: 1 << 30,
} as const;

/** Hash algorithm facts: digest size and node:crypto name. */
export const HASHES: Readonly<
  Record<number, { readonly size: number; readonly node: string; readonly name: string }>
> = {
  [TPM_ALG.SHA1]: { size: 20, node: 'sha1', name: 'sha1' },
  [TPM_ALG.SHA256]: { size: 32, node: 'sha256', name: 'sha256' },
  [TPM_ALG.SHA384]: { size: 48, node: 'sha384', name: 'sha384' },
  [TPM_ALG.SHA512]: { size: 64, node: 'sha512', name: 'sha512' },
};

/** Curve facts: coordinate size and node:crypto name. */
export const CURVES: Readonly<
  Record<number, { readonly size: number; readonly node: string; readonly jwk: string }>
> = {
  [TPM_ECC.NIST_P256]: { size: 32, node: 'prime256v1', jwk: 'P-256' },
  [TPM_ECC.NIST_P384]: { size: 48, node: 'secp384r1', jwk: 'P-384' },
  [TPM_ECC.NIST_P521]: { size: 66, node: 'secp521r1', jwk: 'P-521' },
};

/** EK NV indices and persistent handles (TCG EK Credential Profile; brief §2.3, §3.6). */
export const EK_NV = {
  RSA2048_CERT: 0x01c00002,
  ECC_P256_CERT: 0x01c0000a,
  ECC_P384_H3_CERT: 0x01c00016,
  PLATFORM_CERT: 0x01c08000,
} as const;
