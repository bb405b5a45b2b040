/**
 * The device side of the bundle topic: a retained `BundleMessage` (CBOR) on `$edgeward/bundle`,
 * republished by the gateway when its trust bundle or its own certificate changes.
 * `acceptBundle` checks one such payload against what the device uses now and says whether it
 * is new. In order:
 *
 * 1. it decodes, names the device's trust domain, and carries 1–32 roots that parse as CA
 *    certificates (`ERR_DEVICE_BUNDLE_INVALID` otherwise);
 * 2. it is **authenticated** (`ERR_DEVICE_BUNDLE_UNAUTHENTICATED` otherwise): `signer` is a
 *    certificate chain that verifies now, as a server X.509-SVID, against the roots the device
 *    already trusts; its SPIFFE ID is exactly the device's gateway; and `signature` by that
 *    certificate's key verifies over the trust domain, sequence and roots
 *    (`bundleSigningInput`). So only the holder of the gateway's key can change what a device
 *    trusts, whatever topic or path (a replayed will, a broker bug) the message came by; a
 *    retained signature stays usable only while the signer certificate does (the gateway signs
 *    again when it rotates), which bounds how long an old bundle could be replayed;
 * 3. a sequence below the last one accepted is refused (no rollback to an older bundle). Only
 *    an authenticated message moves the sequence, so a forged one with the highest sequence
 *    blocks nothing that comes after it;
 * 4. the same roots as now (the retained copy every (re)connect brings) are not "new".
 *
 * @example
 * ```ts
 * const r = acceptBundle(payload, { trustDomain, roots, sequence, gatewayId, now: clock.now() });
 * if (r.changed) await writeBundle(dir, r.roots);
 * ```
 */
import { verify as verifySignature, X509Certificate } from 'node:crypto';
import { parseSpiffeId } from '../../runtime/spiffe/id.ts';
import { verifyX509Svid } from '../../runtime/spiffe/verify.ts';
import { TransportError } from '../errors.ts';
import { bundleDigest, bundleSigningInput, decodeCbor } from '../mqtt/reserved.ts';

export interface BundleState {
  readonly trustDomain: string;
  readonly roots: readonly X509Certificate[];
  /** The last accepted sequence; undefined before the first message. */
  readonly sequence: number | undefined;
  /** The only SPIFFE ID whose signature the device accepts: its own gateway's. */
  readonly gatewayId: string;
  /** The device's time, epoch ms (the signer's certificate must be valid then). */
  readonly now: number;
}

export interface AcceptedBundle {
  readonly roots: readonly X509Certificate[];
  readonly sequence: number;
  /** True when the roots differ from the current ones. */
  readonly changed: boolean;
}

const MAX_ROOTS = 32;
const MAX_SIGNER_CHAIN = 8;

function invalid(message: string): never {
  throw new TransportError('ERR_DEVICE_BUNDLE_INVALID', message);
}

function unauthenticated(message: string, cause?: unknown): never {
  throw new TransportError(
    'ERR_DEVICE_BUNDLE_UNAUTHENTICATED',
    message,
    cause === undefined ? {} : { cause },
  );
}

/** Step 2: the message is signed by the device's gateway, under a chain to a root trusted now. */
function authenticate(
  m: Record<string, unknown>,
  body: { trustDomain: string; sequence: number; roots: Uint8Array[] },
  current: BundleState,
): void {
  const raw = m.signer;
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_SIGNER_CHAIN)
    unauthenticated('bundle message is not signed (no signer chain)');
  if (!(m.signature instanceof Uint8Array) || m.signature.length === 0)
    unauthenticated('bundle message carries no signature');
  let chain: X509Certificate[];
  try {
    chain = raw.map((d) => {
      if (!(d instanceof Uint8Array)) throw new Error('not DER bytes');
      return new X509Certificate(d);
    });
  } catch (cause) {
    unauthenticated('bundle signer chain does not parse', cause);
  }
  let signerId: string;
  try {
    const v = verifyX509Svid(chain, {
      now: current.now,
      bundle: { trustDomain: current.trustDomain, roots: current.roots, sequence: 0 },
      purpose: 'server',
    });
    signerId = parseSpiffeId(v.spiffeId).id;
  } catch (cause) {
    unauthenticated(
      `bundle signer does not verify against the trusted roots: ${(cause as Error).message}`,
      cause,
    );
  }
  if (signerId !== current.gatewayId)
    unauthenticated(`bundle signed by ${signerId}, not by the gateway ${current.gatewayId}`);
  const key = (chain[0] as X509Certificate).publicKey;
  let ok = false;
  try {
    ok = verifySignature(bundleDigest(key.asymmetricKeyType), bundleSigningInput(body), key, m.signature);
  } catch {
    ok = false;
  }
  if (!ok) unauthenticated(`bundle signature by ${signerId} does not verify`);
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
  authenticate(m, { trustDomain: current.trustDomain, sequence, roots: raw as Uint8Array[] }, current);
  if (current.sequence !== undefined && sequence < current.sequence)
    invalid(`bundle sequence ${sequence} is older than ${current.sequence}`);
  const have = new Set(current.roots.map((c) => c.fingerprint256));
  const changed = roots.length !== have.size || roots.some((c) => !have.has(c.fingerprint256));
  return { roots, sequence, changed };
}
