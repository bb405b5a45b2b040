/**
 * JWT-SVIDs (SPIFFE JWT-SVID standard) as the issuer signs them: a JWS compact serialization
 * whose protected header is exactly `alg` (ES256), `kid` and `typ: "JWT"`, and whose claims are
 * `sub` (the SPIFFE ID), `aud` (one or more audiences), `exp` and `iat` (seconds). The signature
 * comes from the `CaKey` seam (`sign(data)` → DER ECDSA, so the key may live in software, a TPM
 * or a PKCS#11 token; `jose` cannot sign with such a key) and is converted to the JWS form, raw
 * r‖s (RFC 7518 §3.4). A key's `kid` is its RFC 7638 JWK thumbprint, so every replica holding
 * the same key names it the same way. Verification is `jose`'s (`runtime/workload/jwt.ts`).
 *
 * @example
 * ```ts
 * const kid = jwkThumbprint(key.publicKey);
 * const token = await signJwtSvid(key, kid, { sub: 'spiffe://td/x', aud: ['api'], iat: 1, exp: 301 });
 * ```
 */
import { createHash, type JsonWebKey, type KeyObject } from 'node:crypto';
import { SvidError } from '../errors.ts';
import type { CaKey } from './ca-key.ts';

export interface JwtSvidClaims {
  readonly sub: string;
  readonly aud: readonly string[];
  /** Seconds since the epoch. */
  readonly iat: number;
  readonly exp: number;
}

/** A public JWT signing key as the bundle publishes it (`use: "jwt-svid"`). */
export interface JwtAuthority {
  readonly kid: string;
  /** The public JWK's key members (kty, crv, x, y for EC; n, e for RSA), without `use` and `kid`. */
  readonly jwk: Readonly<Record<string, string>>;
}

const b64url = (b: Uint8Array | string): string => Buffer.from(b).toString('base64url');

/** The public JWK of an EC P-256 key (what the bundle carries); anything else is refused. */
export function publicJwk(key: KeyObject): { kty: 'EC'; crv: 'P-256'; x: string; y: string } {
  const jwk = key.export({ format: 'jwk' }) as JsonWebKey;
  if (key.asymmetricKeyType !== 'ec' || jwk.crv !== 'P-256' || jwk.x === undefined || jwk.y === undefined)
    throw new SvidError('ERR_JWT_KEY_INVALID', 'a JWT-SVID signing key must be an EC P-256 key (ES256)');
  return { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y };
}

/** RFC 7638 thumbprint (SHA-256, base64url) of an EC public key: the `kid`. */
export function jwkThumbprint(key: KeyObject): string {
  const { crv, kty, x, y } = publicJwk(key);
  // Required members only, lexicographic order, no whitespace (RFC 7638 §3.2).
  const canonical = JSON.stringify({ crv, kty, x, y });
  return b64url(createHash('sha256').update(canonical).digest());
}

/** DER ECDSA-Sig-Value → raw r‖s of `size` bytes each (JWS ES256: 32). */
export function derToJoseSignature(der: Uint8Array, size = 32): Buffer {
  const bad = (): SvidError =>
    new SvidError('ERR_JWT_KEY_INVALID', 'the signing key gave no ECDSA signature');
  const b = Buffer.from(der);
  let i = 0;
  const len = (): number => {
    const first = b[i++];
    if (first === undefined) throw bad();
    if (first < 0x80) return first;
    const n = first & 0x7f;
    if (n < 1 || n > 2) throw bad();
    let v = 0;
    for (let k = 0; k < n; k++) v = (v << 8) | (b[i++] ?? 0);
    return v;
  };
  if (b[i++] !== 0x30) throw bad();
  if (len() !== b.length - i) throw bad();
  const out = Buffer.alloc(size * 2);
  for (let part = 0; part < 2; part++) {
    if (b[i++] !== 0x02) throw bad();
    const l = len();
    let v = b.subarray(i, i + l);
    i += l;
    if (v.length !== l) throw bad();
    while (v.length > 0 && v[0] === 0) v = v.subarray(1);
    if (v.length > size) throw bad();
    v.copy(out, part * size + (size - v.length));
  }
  if (i !== b.length) throw bad();
  return out;
}

/** A JWT-SVID signed through the `CaKey` seam with the key named `kid`. */
export async function signJwtSvid(key: CaKey, kid: string, claims: JwtSvidClaims): Promise<string> {
  const header = b64url(JSON.stringify({ alg: 'ES256', kid, typ: 'JWT' }));
  const payload = b64url(
    JSON.stringify({ sub: claims.sub, aud: [...claims.aud], exp: claims.exp, iat: claims.iat }),
  );
  const input = `${header}.${payload}`;
  const sig = derToJoseSignature(await key.sign(Buffer.from(input, 'ascii')));
  return `${input}.${b64url(sig)}`;
}
