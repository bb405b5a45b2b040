/**
 * Signed firmware manifests: what a vendor publishes with each firmware so that gateways can be
 * re-attested after an update. The issuer accepts them as reference values; the OTA hooks check
 * them before an update is installed and publish them after.
 *
 * Envelope (JSON, one file):
 * `{ "format": "edgeward-firmware-manifest/1", "keyId": <hex SHA-256 of the signer's SPKI DER>,
 *    "payload": <base64url of the payload JSON bytes>, "signature": <base64url DER ECDSA P-256/SHA-256
 *    over the payload bytes> }`
 * Payload: `{ "version": "2.3.1", "bank": "sha256", "pcrs": { "0": "<hex>", "7": "<hex>" },
 *   "createdAt": "<ISO 8601>" }`.
 * The signature covers the exact payload bytes, so a vendor can also sign with
 * `openssl dgst -sha256 -sign key.pem payload.json`.
 *
 * @example
 * ```ts
 * const text = signManifest({ version: '2.3.1', bank: 'sha256', pcrs: { 0: hex } }, vendorKey, now);
 * const m = verifyManifest(text, [vendorPublicKey]); // throws ERR_MANIFEST_* when not trusted
 * ```
 */
import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { FirmwareError } from '../errors.ts';

export const MANIFEST_FORMAT = 'edgeward-firmware-manifest/1';
const MAX_MANIFEST_BYTES = 16 * 1024;
const DIGEST_HEX_LENGTH: Record<string, number> = { sha1: 40, sha256: 64, sha384: 96, sha512: 128 };

export interface FirmwareManifest {
  readonly version: string;
  readonly bank: 'sha1' | 'sha256' | 'sha384' | 'sha512';
  /** PCR index → expected value (lowercase hex). */
  readonly pcrs: Readonly<Record<number, string>>;
  readonly createdAt: string;
  /** Hex SHA-256 of the signer's SubjectPublicKeyInfo DER. */
  readonly keyId: string;
}

/** Hex SHA-256 of a public key's SubjectPublicKeyInfo DER. */
export function firmwareKeyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** Sign a manifest with the vendor's ECDSA P-256 key; returns the envelope text. */
export function signManifest(
  manifest: Omit<FirmwareManifest, 'keyId' | 'createdAt'> & { createdAt?: string },
  privateKey: KeyObject,
  now: number,
): string {
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new TypeError('firmware manifests are signed with an ECDSA P-256 key');
  }
  const payload = Buffer.from(
    JSON.stringify({
      version: manifest.version,
      bank: manifest.bank,
      pcrs: Object.fromEntries(Object.entries(manifest.pcrs).map(([k, v]) => [k, v.toLowerCase()])),
      createdAt: manifest.createdAt ?? new Date(now).toISOString(),
    }),
  );
  checkPayload(JSON.parse(payload.toString('utf8')));
  const signature = sign('sha256', payload, privateKey);
  return `${JSON.stringify(
    {
      format: MANIFEST_FORMAT,
      keyId: firmwareKeyId(privateKey),
      payload: payload.toString('base64url'),
      signature: signature.toString('base64url'),
    },
    null,
    2,
  )}\n`;
}

/** Parse and verify an envelope against the trusted firmware keys. */
export function verifyManifest(text: string | Uint8Array, trusted: readonly KeyObject[]): FirmwareManifest {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text);
  if (bytes.length > MAX_MANIFEST_BYTES) invalid(`manifest larger than ${MAX_MANIFEST_BYTES} bytes`);
  let env: unknown;
  try {
    env = JSON.parse(bytes.toString('utf8'));
  } catch {
    invalid('manifest is not JSON');
  }
  if (!isRecord(env) || env.format !== MANIFEST_FORMAT) invalid(`manifest format must be ${MANIFEST_FORMAT}`);
  const { keyId, payload, signature } = env;
  if (typeof keyId !== 'string' || !/^[0-9a-f]{64}$/.test(keyId)) invalid('keyId must be 64 hex digits');
  if (typeof payload !== 'string' || typeof signature !== 'string')
    invalid('payload and signature must be base64url strings');
  const key = trusted.find((k) => firmwareKeyId(k) === keyId);
  if (key === undefined)
    throw new FirmwareError(
      'ERR_MANIFEST_UNKNOWN_KEY',
      `manifest signed by unknown key ${keyId.slice(0, 16)}…`,
    );
  const payloadBytes = Buffer.from(payload, 'base64url');
  let ok = false;
  try {
    ok = verify('sha256', payloadBytes, key, Buffer.from(signature, 'base64url'));
  } catch {
    ok = false;
  }
  if (!ok) throw new FirmwareError('ERR_MANIFEST_SIGNATURE', 'manifest signature does not verify');
  let body: unknown;
  try {
    body = JSON.parse(payloadBytes.toString('utf8'));
  } catch {
    invalid('manifest payload is not JSON');
  }
  return { ...checkPayload(body), keyId };
}

function checkPayload(body: unknown): Omit<FirmwareManifest, 'keyId'> {
  if (!isRecord(body)) invalid('payload must be an object');
  const { version, bank, pcrs, createdAt } = body;
  if (typeof version !== 'string' || version.length === 0 || version.length > 64)
    invalid('version must be a string of 1 to 64 characters');
  if (typeof bank !== 'string' || DIGEST_HEX_LENGTH[bank] === undefined)
    invalid('bank must be sha1, sha256, sha384 or sha512');
  if (typeof createdAt !== 'string' || Number.isNaN(Date.parse(createdAt)))
    invalid('createdAt must be an ISO 8601 time');
  if (!isRecord(pcrs) || Object.keys(pcrs).length === 0) invalid('pcrs must map PCR indices to values');
  const out: Record<number, string> = {};
  for (const [k, v] of Object.entries(pcrs)) {
    if (!/^(?:[0-9]|1[0-9]|2[0-3])$/.test(k)) invalid(`pcrs: '${k}' is not a PCR index 0..23`);
    if (typeof v !== 'string' || !new RegExp(`^[0-9a-f]{${DIGEST_HEX_LENGTH[bank]}}$`).test(v)) {
      invalid(`pcrs.${k}: must be ${DIGEST_HEX_LENGTH[bank]} lowercase hex digits for ${bank}`);
    }
    out[Number(k)] = v;
  }
  return { version, bank: bank as FirmwareManifest['bank'], pcrs: out, createdAt };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(message: string): never {
  throw new FirmwareError('ERR_MANIFEST_INVALID', message);
}
