/**
 * The device side of the bundle topic: a retained `BundleMessage` (CBOR) on `$edgeward/bundle`,
 * republished by the gateway when its trust bundle changes (CA rotation). `acceptBundle` checks
 * one such payload against what the device uses now and says whether it is new:
 *
 * - it decodes, names the device's trust domain, and carries 1–32 roots that parse as CA
 *   certificates (`ERR_DEVICE_BUNDLE_INVALID` otherwise);
 * - a sequence below the last one accepted is refused (no rollback to an older bundle);
 * - the same roots as now (the retained copy every (re)connect brings) are not "new".
 *
 * The topic is reserved: only the gateway's broker publishes there, and the device hears it on
 * the mTLS connection it opened to the gateway's SPIFFE ID.
 *
 * @example
 * ```ts
 * const r = acceptBundle(payload, { trustDomain, roots, sequence });
 * if (r.changed) await writeBundle(dir, r.roots);
 * ```
 */
import { X509Certificate } from 'node:crypto';
import { TransportError } from '../errors.ts';
import { decodeCbor } from '../mqtt/reserved.ts';

export interface BundleState {
  readonly trustDomain: string;
  readonly roots: readonly X509Certificate[];
  /** The last accepted sequence; undefined before the first message. */
  readonly sequence: number | undefined;
}

export interface AcceptedBundle {
  readonly roots: readonly X509Certificate[];
  readonly sequence: number;
  /** True when the roots differ from the current ones. */
  readonly changed: boolean;
}

const MAX_ROOTS = 32;

function invalid(message: string): never {
  throw new TransportError('ERR_DEVICE_BUNDLE_INVALID', message);
}

export function acceptBundle(payload: Uint8Array, current: BundleState): AcceptedBundle {
  const v = decodeCbor(payload);
  if (typeof v !== 'object' || v === null) invalid('bundle message does not decode');
  const m = v as Record<string, unknown>;
  if (m.trustDomain !== current.trustDomain)
    invalid(`bundle is for trust domain ${String(m.trustDomain)}, not ${current.trustDomain}`);
  const sequence = m.sequence;
  if (typeof sequence !== 'number' || !Number.isSafeInteger(sequence) || sequence < 0)
    invalid('bundle sequence is not a non-negative integer');
  if (current.sequence !== undefined && sequence < current.sequence)
    invalid(`bundle sequence ${sequence} is older than ${current.sequence}`);
  const raw = m.roots;
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_ROOTS)
    invalid(`bundle must carry 1 to ${MAX_ROOTS} roots`);
  const roots = raw.map((r, i) => {
    if (!(r instanceof Uint8Array)) return invalid(`root ${i} is not DER bytes`);
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(r);
    } catch {
      return invalid(`root ${i} does not parse as a certificate`);
    }
    if (!cert.ca) invalid(`root ${i} is not a CA certificate`);
    return cert;
  });
  const have = new Set(current.roots.map((c) => c.fingerprint256));
  const changed = roots.length !== have.size || roots.some((c) => !have.has(c.fingerprint256));
  return { roots, sequence, changed };
}
