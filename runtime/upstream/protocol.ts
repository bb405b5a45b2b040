/**
 * The upstream protocol between the gateway agent and the issuer: HTTPS, CBOR bodies
 * (`application/cbor`), versioned paths. Both sides import these types and nothing else of
 * each other (ARCHITECTURE.md §3, §6).
 *
 * Every error answer is `{ error: { code, message } }` with an HTTP status of 400 (bad input),
 * 401/403 (attestation or authorization refused), 404, 409 (replay/conflict), 413 (too big),
 * 415 (wrong content type), 429 (rate limited, with `retryAfterMs`) or 5xx.
 * Binary fields are CBOR byte strings (Uint8Array).
 */

export const CBOR_CONTENT_TYPE = 'application/cbor';
export const MAX_BODY_BYTES = 64 * 1024;

export const PATHS = {
  attestBegin: '/v1/attest/begin',
  attestFinish: '/v1/attest/finish',
  /** Over mTLS with the current gateway SVID. */
  renewBegin: '/v1/renew/begin',
  renewFinish: '/v1/renew/finish',
  bundle: '/v1/bundle',
  revocations: '/v1/revocations',
  manifests: '/v1/firmware/manifests',
  /**
   * Recovery of a gateway whose upstream SVID expired while its delegated CA is still valid:
   * TLS server-auth only (no client certificate), proof of possession of the CA key.
   */
  recoverBegin: '/v1/recover/begin',
  recoverFinish: '/v1/recover/finish',
  /** Over mTLS with the current gateway SVID: the device certificates the gateway issued offline. */
  devicesIssued: '/v1/devices/issued',
  /** Over mTLS with the current gateway SVID: a JWT-SVID for one of the gateway's workloads. */
  jwtSvid: '/v1/jwt-svid',
} as const;

/** At most this many audiences in a JWT-SVID request, each of at most this many characters. */
export const JWT_SVID_MAX_AUDIENCES = 16;
export const JWT_SVID_MAX_AUDIENCE_LENGTH = 256;

/** A JWT-SVID for `spiffeId` (`<the gateway's ID>/workload/<name>`) and these audiences. */
export interface JwtSvidRequest {
  spiffeId: string;
  /** 1..16 audiences. */
  audience: string[];
}

export interface JwtSvidResponse {
  /** The JWT-SVID (JWS compact serialization). */
  token: string;
  /** Its `exp`, in ms. */
  expiresAt: number;
}

export type AttestMethod = 'tpm' | 'join-token' | 'x509pop';

/** Begin: the agent says who it claims to be; the issuer answers with a challenge. */
export type AttestBeginRequest =
  | {
      method: 'tpm';
      /** TPM2B_PUBLIC contents (TPMT_PUBLIC bytes) of the EK. */
      ekPublic: Uint8Array;
      /** EK certificate DER (from NV), if the TPM has one. */
      ekCertificate?: Uint8Array;
      /** TPMT_PUBLIC of the freshly created AK. */
      akPublic: Uint8Array;
    }
  | { method: 'join-token'; token: string }
  | { method: 'x509pop'; chain: Uint8Array[] };

export interface AttestBeginResponse {
  /** Opaque, single use, expires; returned in finish. */
  sessionId: string;
  /** 32 random bytes; the quote's qualifying data is SHA-256(nonce ‖ CSR SubjectPublicKeyInfo DER). */
  nonce: Uint8Array;
  /** tpm only: TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents from MakeCredential. */
  credentialBlob?: Uint8Array;
  encryptedSecret?: Uint8Array;
  /** tpm only: the PCR selection to quote, e.g. `sha256:0,1,2,7`. */
  pcrSelection?: string;
  expiresAt: number;
}

/** The method-specific part of `AttestFinishRequest`: what an attestor answers a challenge with. */
export type AttestProof =
  | {
      method: 'tpm';
      /** The credential the TPM decrypted in ActivateCredential. */
      activatedSecret: Uint8Array;
      /** TPMS_ATTEST bytes (TPM2B_ATTEST contents) and TPMT_SIGNATURE bytes. */
      quote: Uint8Array;
      signature: Uint8Array;
      /** PCR values in selection order, each a digest. */
      pcrValues: Uint8Array[];
    }
  | { method: 'join-token' }
  | {
      method: 'x509pop';
      /** Signature by the factory key over SHA-256("edgeward x509pop v1" ‖ nonce ‖ CSR SPKI DER). */
      signature: Uint8Array;
    };

export type AttestFinishRequest = {
  sessionId: string;
  /** PKCS#10 CSR (DER) for the gateway SVID key. */
  csr: Uint8Array;
  /** PKCS#10 CSR (DER) for the delegated device CA key. */
  caCsr: Uint8Array;
  /**
   * DNS names and IP addresses the gateway's broker serves under, for DNS/IP SANs on the gateway
   * SVID (so plain TLS clients such as mosquitto_pub can check the broker's host name). The
   * issuer admits only names its policy allows; at most 8.
   */
  serverNames?: string[];
} & AttestProof;

/** What a successful attestation or renewal returns. */
export interface IssuedIdentity {
  spiffeId: string;
  /** Gateway SVID chain, leaf first (DER). */
  svidChain: Uint8Array[];
  /** Delegated device CA chain, CA first (DER); empty after a renewal that sent no `caCsr`. */
  deviceCaChain: Uint8Array[];
  /** SPIFFE bundle (JSON text, JWKS form) and its sequence. */
  bundle: string;
  bundleSequence: number;
  /** Nonce for the next renewal's quote. */
  nextNonce: Uint8Array;
  /**
   * The renewal session that `nextNonce` belongs to: a renewal may skip renew/begin and send
   * renew/finish with this sessionId (valid until the SVID's NotAfter, single use).
   */
  nextSessionId?: string;
}

/** Renewal over mTLS: begin gets a nonce, finish carries a fresh quote on the same AK. */
export interface RenewBeginResponse {
  sessionId: string;
  nonce: Uint8Array;
  pcrSelection?: string;
  expiresAt: number;
}

export interface RenewFinishRequest {
  sessionId: string;
  csr: Uint8Array;
  /**
   * A CSR for the delegated device CA's new key. Omitted when the CA is not due (the agent renews
   * it at its own half-life, not at every SVID renewal): the CA is then not re-signed and the
   * answer's `deviceCaChain` is empty — the agent keeps its current CA.
   */
  caCsr?: Uint8Array;
  /** As in AttestFinishRequest. */
  serverNames?: string[];
  quote?: Uint8Array;
  signature?: Uint8Array;
  pcrValues?: Uint8Array[];
}

export interface RevocationFeed {
  /** Monotonically increasing; ask with `?since=N` for what came after N. */
  sequence: number;
  entries: { sequence: number; kind: 'spiffe-id' | 'serial'; value: string; until: number }[];
}

/**
 * Recovery, begin: the gateway's current delegated CA certificate (DER) first, then any
 * intermediates up to (not including) the issuer's root. The issuer answers a single-use nonce.
 */
export interface RecoverBeginRequest {
  caChain: Uint8Array[];
}

export interface RecoverBeginResponse {
  sessionId: string;
  /** 32 random bytes, single use. */
  nonce: Uint8Array;
  /** Present for a tpm gateway: the PCR selection its quote must cover. */
  pcrSelection?: string;
  expiresAt: number;
}

/**
 * Recovery, finish. `caSignature` is a DER ECDSA signature by the delegated CA key over
 * SHA-256("edgeward ca-pop v1" ‖ nonce ‖ CSR SubjectPublicKeyInfo DER) (`runtime/svid/pop.ts`
 * `caPopSignedData` / `caPopDigest`). The quote fields are as in renewal (qualifying data =
 * SHA-256(nonce ‖ CSR SPKI)) and REQUIRED for a tpm gateway. Answer: `IssuedIdentity`.
 */
export interface RecoverFinishRequest {
  sessionId: string;
  csr: Uint8Array;
  caCsr?: Uint8Array;
  serverNames?: string[];
  caSignature: Uint8Array;
  quote?: Uint8Array;
  signature?: Uint8Array;
  pcrValues?: Uint8Array[];
}

/** One device certificate a gateway issued under its delegated CA. */
export interface DeviceIssuedEntry {
  /** Must be under the caller's `<gateway ID>/device/`. */
  spiffeId: string;
  /** Lowercase hex without leading zeros (as `parseCertificate` gives it). */
  serial: string;
  notBefore: number;
  notAfter: number;
  issuedAt: number;
}

/** `POST /v1/devices/issued` (mTLS, gateway SVID): at most `MAX_DEVICES_ISSUED` entries. */
export interface DevicesIssuedRequest {
  entries: DeviceIssuedEntry[];
}

export interface DevicesIssuedResponse {
  accepted: number;
}

export const MAX_DEVICES_ISSUED = 500;
/**
 * The body limit of `devicesIssued`: 500 entries of the longest IDs fit (255-character trust
 * domain, 64-character gateway and device names, 40-digit serials: 264,014 bytes of CBOR).
 */
export const MAX_DEVICES_ISSUED_BODY_BYTES = 384 * 1024;

export interface ErrorBody {
  error: { code: string; message: string; retryAfterMs?: number };
}
