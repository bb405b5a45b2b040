/**
 * Firmware reference values. A vendor's signed manifest (runtime/firmware/manifest.ts) says which
 * PCR values a firmware version produces in one bank; the issuer accepts it only when signed by a
 * configured firmware-signing key. Quotes are then accepted only when their PCR values equal one
 * version's values for every selected PCR.
 *
 * Wire form of `POST /v1/firmware/manifests` (CBOR): `{ manifest: tstr }`, the manifest envelope
 * text exactly as `edgeward hook manifest create` wrote it.
 *
 * @example
 * ```ts
 * const records = acceptManifest(body, firmwareKeys, now); // throws ERR_MANIFEST_* / ERR_ISSUER_MANIFEST_INVALID
 * const version = matchReference(manifests, 'sha256:0,7', pcrValues); // undefined = no match
 * ```
 */
import type { KeyObject } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import { verifyManifest } from '../firmware/manifest.ts';
import type { ManifestRecord } from './records.ts';

/** Verify a posted manifest and turn it into the record the store keeps. */
export function acceptManifest(body: unknown, keys: readonly KeyObject[], now: number): ManifestRecord {
  const text =
    body !== null && typeof body === 'object' && !Array.isArray(body)
      ? (body as { manifest?: unknown }).manifest
      : undefined;
  if (typeof text !== 'string' && !(text instanceof Uint8Array)) {
    throw new IssuerError(
      'ERR_ISSUER_MANIFEST_INVALID',
      'firmware manifest: body must be { manifest: <envelope text> }',
    );
  }
  if (keys.length === 0)
    throw new IssuerError(
      'ERR_ISSUER_MANIFEST_INVALID',
      'firmware manifest: no firmware-signing key is configured',
    );
  const m = verifyManifest(text, keys);
  const pcrs: Record<string, Uint8Array> = {};
  for (const [idx, hex] of Object.entries(m.pcrs)) pcrs[idx] = Buffer.from(hex, 'hex');
  return { version: m.version, bank: m.bank, pcrs, addedAt: now };
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
