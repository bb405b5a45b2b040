/**
 * The reserved `$edgeward/` topics of the main listener and their CBOR payloads (MQTT 3.1.1 has
 * no response topic or correlation data, so both travel inside the payload).
 *
 * - `$edgeward/renew/<deviceId>`: a device publishes `RenewRequest`; only that device may.
 * - `$edgeward/reply/<deviceId>`: the gateway answers with `RenewReply`; only that device may
 *   subscribe.
 * - `$edgeward/bundle`: retained `BundleMessage`, republished when the bundle or the gateway's
 *   own certificate changes, signed with the key of the certificate the gateway serves; every
 *   authenticated client may subscribe.
 * No client may publish anything else under `$edgeward/`, nor retain there.
 */
import { decode, encode } from 'cbor-x';

export const RENEW_PREFIX = '$edgeward/renew/';
export const REPLY_PREFIX = '$edgeward/reply/';
export const BUNDLE_TOPIC = '$edgeward/bundle';

export interface RenewRequest {
  /** Correlation id chosen by the device, echoed in the reply (1–64 bytes of text). */
  readonly id: string;
  /** PKCS#10 CSR, DER. */
  readonly csr: Uint8Array;
}

export type RenewReply =
  | {
      readonly id: string;
      readonly chain: Uint8Array[];
      readonly roots: Uint8Array[];
      readonly notAfter: number;
    }
  | { readonly id: string; readonly error: { readonly code: string; readonly message: string } };

export interface BundleMessage {
  readonly trustDomain: string;
  readonly sequence: number;
  readonly roots: Uint8Array[];
  /** The certificate chain (DER, leaf first) the gateway serves: its key made `signature`. */
  readonly signer: Uint8Array[];
  /** The signer key's signature over `bundleSigningInput` (ECDSA: DER over SHA-256; EdDSA: pure). */
  readonly signature: Uint8Array;
}

/**
 * What a bundle message's signature covers: a context string, then the trust domain, the
 * sequence and every root, each length-prefixed (no CBOR canonicalisation to agree on):
 * `"edgeward bundle v1\0" ‖ u32 len ‖ trustDomain ‖ u64 sequence ‖ u32 n ‖ (u32 len ‖ root DER)ⁿ`.
 */
export function bundleSigningInput(m: {
  readonly trustDomain: string;
  readonly sequence: number;
  readonly roots: readonly Uint8Array[];
}): Buffer {
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const td = Buffer.from(m.trustDomain, 'utf8');
  const seq = Buffer.alloc(8);
  seq.writeBigUInt64BE(BigInt(m.sequence));
  return Buffer.concat([
    Buffer.from('edgeward bundle v1\0', 'latin1'),
    u32(td.length),
    td,
    seq,
    u32(m.roots.length),
    ...m.roots.flatMap((r) => [u32(r.length), Buffer.from(r)]),
  ]);
}

/** The digest argument of `crypto.sign`/`verify` for a key type: none for EdDSA, SHA-256 otherwise. */
export function bundleDigest(keyType: string | undefined): 'sha256' | null {
  return keyType === 'ed25519' || keyType === 'ed448' ? null : 'sha256';
}

export const encodeCbor = (v: unknown): Buffer => encode(v);

/** Decode a CBOR payload; undefined when it does not decode (hostile input never throws). */
export function decodeCbor(buf: Uint8Array): unknown {
  try {
    return decode(buf);
  } catch {
    return undefined;
  }
}

export function asRenewRequest(v: unknown): RenewRequest | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  if (typeof r.id !== 'string' || r.id.length === 0 || r.id.length > 64) return undefined;
  if (!(r.csr instanceof Uint8Array) || r.csr.length > 4096) return undefined;
  return { id: r.id, csr: r.csr };
}
