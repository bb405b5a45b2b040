/**
 * Firmware reference values. A manifest says which PCR values a firmware version produces, per
 * bank; it is accepted only when signed by a configured firmware-signing key. Quotes are then
 * accepted only when their PCR values equal one version's values for every selected PCR.
 *
 * Wire form (CBOR): `{ manifest: bstr, signature: bstr }`, where `manifest` is the CBOR of
 * `{ version: tstr, pcrs: { "sha256": { "0": bstr, "7": bstr, ... } } }` and `signature` is
 * ECDSA (DER) or RSA PKCS#1 v1.5 over `manifest` with SHA-256.
 *
 * @example
 * ```ts
 * const m = verifyManifest(body, firmwareKeys);   // throws ERR_ISSUER_MANIFEST_INVALID
 * const version = matchReference(manifests, 'sha256:0,7', pcrValues); // undefined = no match
 * ```
 */
import { type KeyObject, sign, verify } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import type { ManifestRecord } from './records.ts';
import { issuerCbor } from './store.ts';

const DIGEST_SIZE: Record<string, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

export interface Manifest {
  readonly version: string;
  /** bank → PCR index → digest. */
  readonly pcrs: Readonly<Record<string, Readonly<Record<string, Uint8Array>>>>;
}

const bad = (why: string): IssuerError =>
  new IssuerError('ERR_ISSUER_MANIFEST_INVALID', `firmware manifest: ${why}`);

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** Check the envelope's signature against `keys`, then the manifest's shape. */
export function verifyManifest(body: unknown, keys: readonly KeyObject[]): Manifest {
  if (!isMap(body)) throw bad('must be a CBOR map');
  const { manifest, signature } = body;
  if (!(manifest instanceof Uint8Array) || manifest.length === 0) throw bad('manifest must be a byte string');
  if (!(signature instanceof Uint8Array) || signature.length === 0) throw bad('unsigned');
  if (keys.length === 0) throw bad('no firmware-signing key is configured');
  const ok = keys.some((key) => {
    try {
      return verify(
        'sha256',
        manifest,
        key.asymmetricKeyType === 'ec' ? { key, dsaEncoding: 'der' } : key,
        signature,
      );
    } catch {
      return false;
    }
  });
  if (!ok) throw bad('signature does not verify with any configured firmware-signing key');
  let doc: unknown;
  try {
    doc = issuerCbor.decode(manifest);
  } catch {
    throw bad('manifest is not CBOR');
  }
  if (!isMap(doc)) throw bad('manifest must be a map');
  const version = doc.version;
  if (typeof version !== 'string' || !/^[A-Za-z0-9._+-]{1,64}$/.test(version))
    throw bad('version must be 1-64 of [A-Za-z0-9._+-]');
  if (!isMap(doc.pcrs)) throw bad('pcrs must be a map of banks');
  const pcrs: Record<string, Record<string, Uint8Array>> = {};
  for (const [bank, values] of Object.entries(doc.pcrs)) {
    const size = DIGEST_SIZE[bank];
    if (size === undefined) throw bad(`unknown bank ${bank}`);
    if (!isMap(values)) throw bad(`pcrs.${bank} must be a map`);
    const out: Record<string, Uint8Array> = {};
    for (const [idx, v] of Object.entries(values)) {
      if (!/^(\d|1\d|2[0-3])$/.test(idx)) throw bad(`pcrs.${bank}: index ${idx} out of 0..23`);
      if (!(v instanceof Uint8Array) || v.length !== size)
        throw bad(`pcrs.${bank}.${idx} must be ${size} bytes`);
      out[idx] = v;
    }
    if (Object.keys(out).length === 0) throw bad(`pcrs.${bank} is empty`);
    pcrs[bank] = out;
  }
  if (Object.keys(pcrs).length === 0) throw bad('no PCR values');
  return { version, pcrs };
}

/** `sha256:0,1,2,7+sha1:0` → [['sha256', [0,1,2,7]], ['sha1', [0]]] with sorted, unique indices. */
export function selectionBanks(selection: string): [string, number[]][] {
  return selection.split('+').map((part) => {
    const [bank = '', list = ''] = part.trim().split(':');
    return [bank, [...new Set(list.split(',').map(Number))].sort((a, b) => a - b)];
  });
}

/** The version whose reference values equal `pcrValues` (selection order), or undefined. */
export function matchReference(
  manifests: readonly ManifestRecord[],
  selection: string,
  pcrValues: readonly Uint8Array[],
): string | undefined {
  const wanted: [string, number, Uint8Array][] = [];
  let i = 0;
  for (const [bank, idxs] of selectionBanks(selection))
    for (const idx of idxs) wanted.push([bank, idx, pcrValues[i++] ?? new Uint8Array()]);
  if (i !== pcrValues.length) return undefined;
  const versions = new Set(manifests.map((m) => m.version));
  for (const v of versions) {
    const byBank = new Map(manifests.filter((m) => m.version === v).map((m) => [m.bank, m.pcrs]));
    const all = wanted.every(([bank, idx, value]) => {
      const ref = byBank.get(bank)?.[String(idx)];
      return ref !== undefined && Buffer.from(ref).equals(Buffer.from(value));
    });
    if (all) return v;
  }
  return undefined;
}

/** Sign a manifest (for operators' tooling and tests): returns the CBOR envelope bytes. */
export function signManifest(m: Manifest, key: KeyObject): Uint8Array {
  const manifest = issuerCbor.encode({ version: m.version, pcrs: m.pcrs }) as Uint8Array;
  const signature = sign(
    'sha256',
    manifest,
    key.asymmetricKeyType === 'ec' ? { key, dsaEncoding: 'der' } : key,
  );
  return issuerCbor.encode({ manifest, signature }) as Uint8Array;
}
