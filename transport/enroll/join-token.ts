/**
 * One-time join tokens: `ewt1.<secret>.<fingerprint>[.<fingerprint>...]`, all base64url. The
 * secret is 32 random bytes of which the gateway stores only SHA-256; each fingerprint is the
 * SHA-256 of a trust bundle root's DER (as kubeadm's discovery hash), so the device can
 * authenticate the gateway on the enrollment listener before it sends anything (ARCHITECTURE.md
 * §5). A token names every root of the bundle it was made with, the signing root last: across
 * the issuer's CA switch (the next root published, then signing, the old one retired later) a
 * token made at any point still names a root the gateway serves until it expires, whichever
 * root the device finds first in `cacerts`. A one-fingerprint token (made before) still parses.
 *
 * The agent's admin route `POST /v1/device-tokens` calls `issueJoinToken`; the enrollment
 * listener calls `redeemJoinToken`.
 *
 * @example
 * ```ts
 * const { token, expiresAt } = await issueJoinToken({ store, random, clock, bundle, deviceId: 'sensor-1', ttlMs: 600_000 });
 * ```
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../../runtime/core/clock.ts';
import type { Random } from '../../runtime/core/random.ts';
import { AgentError } from '../../runtime/errors.ts';
import type { X509Bundle } from '../../runtime/sources/types.ts';
import { isPathSegment, parseSpiffeId } from '../../runtime/spiffe/id.ts';
import { TransportError } from '../errors.ts';
import type { TokenRecord, TokenStore } from './token-store.ts';

const PREFIX = 'ewt1';
/** At most this many fingerprints in a token (a bundle mid-rotation has two or three roots). */
export const MAX_TOKEN_ROOTS = 8;
const MAX_TTL_MS = 7 * 24 * 3_600_000;
/** The device signer's limit on a device id (runtime/agent/device-signer.ts). */
export const MAX_DEVICE_ID = 64;

export interface ParsedToken {
  readonly secret: Buffer;
  /** SHA-256 of the bundle roots of which the gateway must present one (the signing root last). */
  readonly fingerprints: readonly Buffer[];
}

export const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

export function parseJoinToken(token: string): ParsedToken {
  const parts = typeof token === 'string' ? token.trim().split('.') : [];
  const secret = Buffer.from(parts[1] ?? '', 'base64url');
  const fingerprints = parts.slice(2).map((p) => Buffer.from(p, 'base64url'));
  if (
    parts.length < 3 ||
    parts.length > 2 + MAX_TOKEN_ROOTS ||
    parts[0] !== PREFIX ||
    secret.length !== 32 ||
    fingerprints.some((f) => f.length !== 32)
  ) {
    throw new TransportError(
      'ERR_ENROLL_TOKEN_INVALID',
      'not an edgeward join token (ewt1.<secret>.<fingerprint>[.<fingerprint>...])',
    );
  }
  return { secret, fingerprints };
}

/** True when one of the bundle's roots has one of the fingerprints. */
export function bundleMatches(fingerprints: readonly Uint8Array[], roots: readonly Uint8Array[]): boolean {
  return roots.some((r) => {
    const h = sha256(r);
    return fingerprints.some((f) => h.length === f.length && timingSafeEqual(h, f));
  });
}

/** The token's fingerprints for `roots`: the others (in bundle order, no repeats), the signing root last. */
export function tokenPins(roots: readonly Uint8Array[]): Buffer[] {
  const signing = roots[0];
  if (signing === undefined) throw new TypeError('the bundle has no root');
  const first = sha256(signing);
  const others: Buffer[] = [];
  for (const r of roots.slice(1)) {
    const h = sha256(r);
    if (!h.equals(first) && !others.some((o) => o.equals(h))) others.push(h);
  }
  return [...others.slice(0, MAX_TOKEN_ROOTS - 1), first];
}

export async function issueJoinToken(o: {
  store: TokenStore;
  random: Random;
  clock: Clock;
  bundle: X509Bundle;
  deviceId: string;
  ttlMs: number;
}): Promise<{ token: string; expiresAt: number }> {
  // A token that could never be used is not issued: the device id follows the device signer's
  // rule (runtime/agent/device-signer.ts: 1-64 of letters, digits, ".", "-", "_", one path segment).
  if (typeof o.deviceId !== 'string' || o.deviceId.length > MAX_DEVICE_ID || !isPathSegment(o.deviceId))
    throw new AgentError(
      'ERR_DEVICE_ID_INVALID',
      'device id must be 1-64 of letters, digits, ".", "-", "_"',
      {
        deviceId: String(o.deviceId).slice(0, 80),
      },
    );
  parseSpiffeId(`spiffe://${o.bundle.trustDomain}/device/${o.deviceId}`);
  if (!Number.isInteger(o.ttlMs) || o.ttlMs <= 0 || o.ttlMs > MAX_TTL_MS) {
    throw new TypeError(`ttlMs must be an integer in (0, ${MAX_TTL_MS}]`);
  }
  const pins = tokenPins(o.bundle.roots.map((r) => r.raw));
  const secret = o.random.bytes(32);
  const expiresAt = o.clock.now() + o.ttlMs;
  await o.store.put(sha256(secret).toString('hex'), { deviceId: o.deviceId, expiresAt });
  return {
    token: [PREFIX, secret.toString('base64url'), ...pins.map((p) => p.toString('base64url'))].join('.'),
    expiresAt,
  };
}

/**
 * Redeem the token: `use` (the device's certificate issuance) runs with its record, and the
 * token is consumed only when `use` succeeds, atomically with it (the store's lock), so a refused
 * CSR leaves the token usable and a token never yields two certificates. Refused when unknown,
 * already used or expired (`ERR_ENROLL_TOKEN_INVALID`).
 */
export async function redeemJoinToken<T>(
  store: TokenStore,
  token: string,
  now: () => number,
  use: (record: TokenRecord) => Promise<T>,
): Promise<T> {
  const { secret } = parseJoinToken(token);
  const done = await store.consume(sha256(secret).toString('hex'), async (rec) => {
    if (rec.expiresAt < now()) throw new TransportError('ERR_ENROLL_TOKEN_INVALID', 'join token expired');
    return use(rec);
  });
  if (done === undefined)
    throw new TransportError('ERR_ENROLL_TOKEN_INVALID', 'join token unknown or already used');
  return done.value;
}
