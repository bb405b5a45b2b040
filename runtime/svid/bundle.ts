/**
 * SPIFFE bundles in their JSON form (SPIFFE Trust Domain and Bundle §4): a JWK Set whose
 * X.509 roots are keys with `use: "x509-svid"` and exactly one `x5c` certificate, whose JWT-SVID
 * signing keys are keys with `use: "jwt-svid"` and a `kid` (§4.2.2), plus `spiffe_sequence` and
 * `spiffe_refresh_hint` (seconds). Decoding checks each root's JWK against its certificate's key
 * and ignores keys of other or unknown `use` (§4.2.1). A JWT key that is not usable (no `kid`, a
 * JWK that does not decode, a private member, a `kid` given twice) is left out, not the bundle:
 * the X.509 roots still arrive, and a token of such a key simply does not validate.
 *
 * @example
 * ```ts
 * const json = encodeBundle({ roots: [caDer], sequence: 3, refreshHintSeconds: 300 });
 * const b = decodeBundle(json);   // { roots: X509Certificate[], sequence: 3, refreshHintSeconds: 300 }
 * ```
 */
import { createPublicKey, type JsonWebKey, X509Certificate } from 'node:crypto';
import { SvidError } from '../errors.ts';
import type { JwtAuthority } from './jwt-svid.ts';

export interface BundleContents {
  readonly roots: readonly Uint8Array[];
  /** JWT-SVID signing keys (public), published with `use: "jwt-svid"`. */
  readonly jwtKeys?: readonly JwtAuthority[];
  readonly sequence: number;
  readonly refreshHintSeconds?: number;
}

export interface DecodedBundle {
  readonly roots: readonly X509Certificate[];
  readonly jwtKeys: readonly JwtAuthority[];
  readonly sequence: number;
  readonly refreshHintSeconds: number | undefined;
}

const JWK_KEY_FIELDS = ['kty', 'crv', 'x', 'y', 'n', 'e'] as const;

export function encodeBundle(b: BundleContents): string {
  const keys = b.roots.map((der) => {
    const cert = new X509Certificate(Buffer.from(der));
    const jwk = cert.publicKey.export({ format: 'jwk' }) as JsonWebKey;
    const out: Record<string, unknown> = { use: 'x509-svid' };
    for (const f of JWK_KEY_FIELDS) if (jwk[f] !== undefined) out[f] = jwk[f];
    out.x5c = [Buffer.from(der).toString('base64')];
    return out;
  });
  for (const k of b.jwtKeys ?? []) keys.push({ use: 'jwt-svid', ...k.jwk, kid: k.kid });
  return JSON.stringify({
    keys,
    spiffe_sequence: b.sequence,
    ...(b.refreshHintSeconds === undefined ? {} : { spiffe_refresh_hint: b.refreshHintSeconds }),
  });
}

export function decodeBundle(json: string): DecodedBundle {
  const bad = (why: string, cause?: unknown): SvidError =>
    new SvidError('ERR_BUNDLE_MALFORMED', `bundle: ${why}`, cause === undefined ? undefined : { cause });
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (cause) {
    throw bad('not JSON', cause);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw bad('must be a JSON object');
  const d = doc as Record<string, unknown>;
  if (!Array.isArray(d.keys)) throw bad('"keys" must be an array');
  const seqN = d.spiffe_sequence;
  if (seqN !== undefined && (typeof seqN !== 'number' || !Number.isSafeInteger(seqN) || seqN < 0))
    throw bad('"spiffe_sequence" must be a non-negative integer');
  const hint = d.spiffe_refresh_hint;
  if (hint !== undefined && (typeof hint !== 'number' || !Number.isSafeInteger(hint) || hint < 0))
    throw bad('"spiffe_refresh_hint" must be a non-negative integer (seconds)');
  const roots: X509Certificate[] = [];
  const jwtKeys: JwtAuthority[] = [];
  d.keys.forEach((k, i) => {
    if (k === null || typeof k !== 'object' || Array.isArray(k)) throw bad(`keys[${i}] must be an object`);
    const key = k as Record<string, unknown>;
    if (key.use === 'jwt-svid') {
      const j = jwtKey(key);
      if (j !== undefined) jwtKeys.push(j);
      return;
    }
    if (key.use !== 'x509-svid') return;
    const x5c = key.x5c;
    if (!Array.isArray(x5c) || x5c.length !== 1 || typeof x5c[0] !== 'string')
      throw bad(`keys[${i}]: an x509-svid key needs exactly one x5c certificate`);
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(Buffer.from(x5c[0], 'base64'));
    } catch (cause) {
      throw bad(`keys[${i}].x5c[0] is not a certificate`, cause);
    }
    let fromJwk: ReturnType<typeof createPublicKey>;
    try {
      const jwk: Record<string, unknown> = {};
      for (const f of JWK_KEY_FIELDS) if (key[f] !== undefined) jwk[f] = key[f];
      fromJwk = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    } catch (cause) {
      throw bad(`keys[${i}] is not a valid public JWK`, cause);
    }
    let same = false;
    try {
      same = fromJwk.equals(cert.publicKey); // throws when the certificate's key does not decode
    } catch (cause) {
      throw bad(`keys[${i}].x5c[0] has a public key that does not decode`, cause);
    }
    if (!same) throw bad(`keys[${i}]: JWK and x5c certificate keys differ`);
    if (!cert.ca) throw bad(`keys[${i}]: x5c certificate is not a CA`);
    roots.push(cert);
  });
  const once = (kid: string): boolean => jwtKeys.filter((j) => j.kid === kid).length === 1;
  return {
    roots,
    jwtKeys: jwtKeys.filter((j) => once(j.kid)),
    sequence: typeof seqN === 'number' ? seqN : 0,
    refreshHintSeconds: hint as number | undefined,
  };
}

/** One `use: "jwt-svid"` key: a `kid` and a public JWK that decodes; else undefined. */
function jwtKey(key: Record<string, unknown>): JwtAuthority | undefined {
  if (typeof key.kid !== 'string' || key.kid.length === 0 || key.kid.length > 256) return undefined;
  if (key.d !== undefined) return undefined;
  const jwk: Record<string, string> = {};
  for (const f of JWK_KEY_FIELDS) {
    const v = key[f];
    if (v === undefined) continue;
    if (typeof v !== 'string') return undefined;
    jwk[f] = v;
  }
  try {
    createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } catch {
    return undefined;
  }
  return { kid: key.kid, jwk };
}
