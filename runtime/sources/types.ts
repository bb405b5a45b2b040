/**
 * What consumers (the MQTT transport, the OTA verifier, the bridge) see of identities: one-method
 * sources with change notifications. A static source, and the live rotating agent, both implement
 * them, so the transport never imports the agent (ARCHITECTURE.md §6).
 *
 * @example
 * ```ts
 * const svid = source.getX509Svid();        // throws ERR_SVID_UNAVAILABLE when none is valid
 * const off = source.onChange(() => server.setSecureContext(contextFor(source.getX509Svid())));
 * ```
 */
import type { KeyObject, X509Certificate } from 'node:crypto';

/** An X.509-SVID with its private key: the leaf first, then intermediates up to (not including) a root. */
export interface X509Svid {
  /** `spiffe://<td>/...`, the leaf's one URI SAN. */
  readonly spiffeId: string;
  /** Leaf first, then the intermediates that chain it to a root in the bundle. */
  readonly chain: readonly X509Certificate[];
  readonly privateKey: KeyObject;
  /** The leaf's NotAfter, epoch ms (the earliest NotAfter of the chain). */
  readonly notAfter: number;
}

/** The X.509 roots of a trust domain (SPIFFE bundle, `use: x509-svid` keys). */
export interface X509Bundle {
  readonly trustDomain: string;
  readonly roots: readonly X509Certificate[];
  /** `spiffe_sequence` of the bundle this came from; increases with every change. */
  readonly sequence: number;
}

/** Unsubscribe function returned by `onChange`. */
export type Unsubscribe = () => void;

export interface SvidSource {
  /** The current SVID; throws a typed `ERR_SVID_UNAVAILABLE` when none is valid now. */
  getX509Svid(): X509Svid;
  /** Called after every change of the current SVID (rotation, expiry, re-attestation). */
  onChange(listener: () => void): Unsubscribe;
}

export interface BundleSource {
  /** The bundle for `trustDomain`; throws `ERR_BUNDLE_UNAVAILABLE` when unknown. */
  getBundleFor(trustDomain: string): X509Bundle;
  onChange(listener: () => void): Unsubscribe;
}

/** What is revoked, as known to this gateway. */
export interface RevocationSource {
  /** True when the SPIFFE ID itself is revoked. */
  isRevokedId(spiffeId: string): boolean;
  /** True when the certificate serial (lowercase hex, no leading zeros) is revoked. */
  isRevokedSerial(serialHex: string): boolean;
  /** Called with what became revoked, so live sessions using it can be closed. */
  onRevoke(
    listener: (revoked: { spiffeIds: readonly string[]; serials: readonly string[] }) => void,
  ): Unsubscribe;
}

/**
 * The gateway's delegated device CA, as the enrollment and renewal handlers see it: it signs a
 * device SVID for a CSR (DER, PKCS#10) and a device id. The agent implements it; tests use a
 * static one.
 */
export interface DeviceSigner {
  /** The gateway's SPIFFE ID; device IDs are `<gatewayId>/device/<deviceId>`. */
  readonly gatewayId: string;
  /** Sign a device SVID; resolves to the chain (leaf, delegated CA) in DER. */
  signDevice(request: {
    deviceId: string;
    csrDer: Uint8Array;
    ttlMs?: number;
  }): Promise<{ chain: readonly Uint8Array[]; notAfter: number }>;
}
