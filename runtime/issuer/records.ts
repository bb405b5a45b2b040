/**
 * What the issuer keeps, and under which keys. Every record is a plain CBOR map; binary fields
 * are byte strings. Keys sort usefully: audit and revocation keys embed zero-padded numbers.
 */
import type { AttestMethod } from '../upstream/protocol.ts';

export const K = {
  schema: 'meta/schema',
  bundle: 'meta/bundle',
  revSeq: 'meta/revseq',
  registration: (kind: 'ek' | 'x509', key: string) => `reg/${kind}/${key}`,
  gateway: (name: string) => `gw/${name}`,
  token: (hashHex: string) => `token/${hashHex}`,
  session: (id: string) => `session/${id}`,
  issued: (serialHex: string) => `issued/${serialHex}`,
  revocation: (seq: number) => `rev/${String(seq).padStart(12, '0')}`,
  manifest: (bank: string, version: string) => `manifest/${bank}/${version}`,
  /** A replica's heartbeat: which CA keys it holds (`ca-replicas.ts`). */
  replica: (instance: string) => `replica/${instance}`,
  /** `at` ms, then this process's counter, then its random instance id: unique across replicas. */
  audit: (at: number, n: number, instance: string) =>
    `audit/${String(at).padStart(15, '0')}-${String(n).padStart(8, '0')}-${instance}`,
  /** The first audit key possible at `at` (listing bound). */
  auditFrom: (at: number) => `audit/${String(at).padStart(15, '0')}-`,
} as const;

/** Which EK (by SHA-256 of its TPMT_PUBLIC) or factory identity becomes which gateway name. */
export interface Registration {
  name: string;
  createdAt: number;
  by: 'admin' | 'auto';
}

export interface GatewayRecord {
  name: string;
  disabled: boolean;
  method: AttestMethod;
  createdAt: number;
  /** tpm: the AK public area renewals must quote with, and the EK hash. */
  akPublic?: Uint8Array;
  ekHash?: string;
  /** The firmware version whose reference values the last quote matched. */
  firmware?: string;
  /**
   * Firmware versions this gateway may attest with (set by its first OTA commit); absent: any
   * published version. See `firmware.ts`.
   */
  firmwareAccepted?: string[];
  /** A version staged by the gateway's post-install, with the SHA-256 of its one ticket. */
  firmwareStaged?: { version: string; ticketHash: Uint8Array; at: number };
  /** The latest NotAfter of anything issued to this gateway (bounds revocations). */
  maxNotAfter: number;
  lastIssuedAt?: number;
  /** An operator's offline budget for this gateway (delegated CA lifetime, ms); absent: the config's. */
  offlineBudgetMs?: number;
  /** The delegated CAs issued to this gateway that are still valid: recovery admits only these. */
  deviceCas?: { serial: string; notAfter: number }[];
}

export interface JoinTokenRecord {
  name: string;
  expiresAt: number;
  createdAt: number;
}

export interface SessionRecord {
  id: string;
  kind: 'attest' | 'renew' | 'recover';
  method: AttestMethod;
  nonce: Uint8Array;
  expiresAt: number;
  gateway: string;
  /** join-token: the token's hash, consumed at finish. */
  tokenHash?: string;
  /** x509pop: the factory leaf certificate, and whether finish registers it. */
  leaf?: Uint8Array;
  registerKey?: string;
  /** tpm attest: SHA-256 of the credential, the AK and EK facts to remember. */
  credentialHash?: Uint8Array;
  akPublic?: Uint8Array;
  ekHash?: string;
  pcrSelection?: string;
  /** recover: the delegated CA (DER) whose key must sign, and its serial. */
  caCertificate?: Uint8Array;
  caSerial?: string;
}

/** `device`: a device certificate the gateway reported issuing under its delegated CA. */
export interface IssuedRecord {
  spiffeId: string;
  gateway: string;
  kind: 'svid' | 'device-ca' | 'device';
  notAfter: number;
}

export interface RevocationRecord {
  sequence: number;
  kind: 'spiffe-id' | 'serial';
  value: string;
  until: number;
}

export interface ManifestRecord {
  version: string;
  bank: string;
  /** PCR index → expected digest. */
  pcrs: Record<string, Uint8Array>;
  addedAt: number;
}

export type AuditKind =
  | 'issue'
  | 'renew'
  | 'refuse'
  | 'revoke'
  | 'manifest'
  | 'register'
  | 'disable'
  | 'enable'
  | 'token'
  | 'ca'
  | 'jwt'
  | 'recover'
  | 'device'
  | 'budget'
  | 'operator'
  /** An attest, renew or recover finish answered again from `done/` (finish-done.ts): nothing issued. */
  | 'retry';

export interface AuditEvent {
  at: number;
  event: AuditKind;
  method?: string;
  gateway?: string;
  spiffeId?: string;
  serials?: string[];
  code?: string;
  address?: string;
  detail?: string;
  /** Who did it, for operator actions: `uid:N` over the admin socket, an operator SPIFFE ID over mTLS, `offline` for a command run on the store. */
  by?: string;
}
