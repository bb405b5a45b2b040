/**
 * The records of store schema 2 and their names. Certificates are DER, software keys PKCS#8 DER,
 * a TPM-resident delegated CA key its TPM key blob (the private part wrapped by the TPM's storage
 * primary); every record is sealed by `SealedStore`, so private keys never touch the disk
 * unsealed. Schema 2 added `GatewayRecord.caKeyBackend` (migrations.ts).
 *
 * | name              | record              |
 * |-------------------|---------------------|
 * | `gateway`         | `GatewayRecord`: gateway SVID chain + key, and the delegated CA chain + key (one atomic unit) |
 * | `bundle`          | `BundleRecord`      |
 * | `revocations`     | `RevocationRecord`  |
 * | `floor`           | `FloorRecord`: the time floor |
 * | `device/<id>`     | `DeviceRecord`: what was issued to a device (no key: devices keep theirs) |
 */
export const NAMES = {
  gateway: 'gateway',
  bundle: 'bundle',
  revocations: 'revocations',
  floor: 'floor',
  devicePrefix: 'device/',
} as const;

export const deviceName = (deviceId: string): string => `${NAMES.devicePrefix}${deviceId}`;

export interface GatewayRecord {
  spiffeId: string;
  /** Gateway SVID chain, leaf first (DER). */
  svidChain: Uint8Array[];
  /** PKCS#8 DER of the SVID key. */
  svidKey: Uint8Array;
  /** Delegated device CA chain, CA first (DER). */
  caChain: Uint8Array[];
  /**
   * Where the delegated CA key lives: `software` = `caKey` is its PKCS#8 DER; `tpm` = `caKey` is
   * a TPM key blob (attestors/tpm/signing-key.ts) that only this TPM can load and use.
   */
  caKeyBackend: 'software' | 'tpm';
  caKey: Uint8Array;
  /** When this was obtained (epoch ms, by the clock then) and how: attest, renew or recover (PoP of the CA key). */
  obtainedAt: number;
  via: 'attest' | 'renew' | 'recover';
  /** Nonce for the next renewal's quote, as the issuer last gave it. */
  nextNonce: Uint8Array;
}

export interface BundleRecord {
  trustDomain: string;
  json: string;
  sequence: number;
}

export interface RevocationRecord {
  sequence: number;
  entries: { sequence: number; kind: 'spiffe-id' | 'serial'; value: string; until: number }[];
}

export interface FloorRecord {
  ms: number;
}

export interface DeviceRecord {
  deviceId: string;
  spiffeId: string;
  /** Lowercase hex, no leading zeros. */
  serial: string;
  notAfter: number;
  issuedAt: number;
}
