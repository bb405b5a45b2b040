/**
 * CA rotation with the CA key in a PKCS#11 token shared by every replica: `nextSource` generates
 * the next CA's key in the token of the active one, under a new label (`issuer-ca-<UTC time>-<hex>`),
 * and signs its self-signed certificate there (the active CA's lifetime, the next generation
 * number in the subject); `keyFor` finds the key of a CA certificate another replica made by its
 * public key: the token's public key objects are compared with the certificate's, and the
 * matching key is opened by its label and CKA_ID (a probe signature proves it). Nothing is
 * written to disk: the store's record holds the certificate, the token the key, so `ca rotate`
 * needs no config edit and no restart on any replica. Keys opened here are closed with the
 * issuer (`owned`), or before when their CA is retired (then they leave `owned`). A certificate whose key is not in the token is asked about again at most once
 * a minute.
 *
 * @example
 * ```ts
 * const { nextSource, keyFor } = pkcs11Rotation({ uri, module, pinFile, trustDomain, clock, random, owned });
 * await CaSet.open({ ..., nextSource, keyFor });
 * ```
 */
import { X509Certificate } from 'node:crypto';
import type { Clock } from '../../core/clock.ts';
import type { Random } from '../../core/random.ts';
import { createRootCaWithKey } from '../../svid/authority.ts';
import type { CaKey } from '../../svid/ca-key.ts';
import type { CaKeyPair } from '../ca.ts';
import { generatePkcs11CaKey, openPkcs11CaKey, type Pkcs11CaKey } from './key.ts';
import { CK, type Handle, Pkcs11Module } from './module.ts';
import { closeQuietly, findSlotFresh, login, readPinFile } from './token.ts';
import { formatPkcs11Uri, type Pkcs11Uri, parsePkcs11Uri } from './uri.ts';

export interface Pkcs11RotationOptions {
  /** The active CA key's URI: the next keys go to its token. */
  readonly uri: string;
  readonly module: string;
  readonly pinFile: string;
  readonly trustDomain: string;
  readonly clock: Clock;
  readonly random: Random;
  /** Keys opened here are added (closed with the issuer). */
  readonly owned: CaKey[];
}

/** How long a certificate whose key is not in the token is not asked about again. */
const MISS_MS = 60_000;

/** The token part of a key URI (which token, not which key). */
const tokenOf = (u: Pkcs11Uri): Pkcs11Uri => ({
  ...(u.token === undefined ? {} : { token: u.token }),
  ...(u.serial === undefined ? {} : { serial: u.serial }),
  ...(u.manufacturer === undefined ? {} : { manufacturer: u.manufacturer }),
  ...(u.model === undefined ? {} : { model: u.model }),
});

/**
 * `key`, added to `owned` (closed with the issuer) until it is closed: a key closed before (its CA
 * retired, `ca-held.ts`) leaves the list, which so stays as long as the keys held.
 */
function own(owned: CaKey[], key: Pkcs11CaKey): Pkcs11CaKey {
  owned.push(key);
  return {
    backend: key.backend,
    uri: key.uri,
    spki: key.spki,
    publicKey: key.publicKey,
    sign: (data) => key.sign(data),
    close: async () => {
      const i = owned.indexOf(key);
      if (i >= 0) owned.splice(i, 1);
      await key.close();
    },
  };
}

/** `issuer-ca-20261207T001500Z-1a2b`: unique per rotation, sortable by time. */
export function nextKeyLabel(now: number, random: Random): string {
  const t = new Date(now)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `issuer-ca-${t}-${random.bytes(2).toString('hex')}`;
}

/** The uncompressed point 04‖x‖y of a P-256 certificate's key. */
export function pointOf(x: X509Certificate): Buffer {
  const jwk = x.publicKey.export({ format: 'jwk' });
  if (jwk.crv !== 'P-256') return Buffer.alloc(0);
  return Buffer.concat([
    Buffer.from([4]),
    Buffer.from(jwk.x as string, 'base64url'),
    Buffer.from(jwk.y as string, 'base64url'),
  ]);
}

/** The label and CKA_ID of the public key object whose point is `point`, in the token of `u`. */
export async function findKeyByPoint(
  o: { module: string; pinFile: string },
  u: Pkcs11Uri,
  point: Buffer,
): Promise<Pkcs11Uri | undefined> {
  if (point.length !== 65) return undefined;
  const pin = await readPinFile(o.pinFile);
  const m = await Pkcs11Module.open(o.module);
  try {
    await m.ready();
    const slot = await findSlotFresh(m, u);
    const s = m.api.C_OpenSession(slot, CK.CKF_SERIAL_SESSION);
    try {
      login(m, s, pin);
      m.api.C_FindObjectsInit(s, [{ type: CK.CKA_CLASS, value: CK.CKO_PUBLIC_KEY }]);
      let handles: Handle[];
      try {
        handles = m.api.C_FindObjects(s, 1000);
      } finally {
        m.api.C_FindObjectsFinal(s);
      }
      for (const h of handles) {
        const [ec, label, id] = m.api.C_GetAttributeValue(s, h, [
          { type: CK.CKA_EC_POINT },
          { type: CK.CKA_LABEL },
          { type: CK.CKA_ID },
        ]);
        let p = ec?.value as Buffer | undefined;
        if (p?.length === 67 && p[0] === 0x04 && p[1] === 65) p = p.subarray(2);
        if (p === undefined || !p.equals(point)) continue;
        const l = (label?.value as Buffer | undefined)?.toString('utf8');
        const i = id?.value as Buffer | undefined;
        return {
          ...tokenOf(u),
          ...(l === undefined || l === '' ? {} : { object: l }),
          ...(i === undefined || i.length === 0 ? {} : { id: i }),
        };
      }
      return undefined;
    } finally {
      closeQuietly(m, s);
    }
  } finally {
    await m.release();
  }
}

export function pkcs11Rotation(o: Pkcs11RotationOptions): {
  nextSource: (active: X509Certificate) => Promise<CaKeyPair>;
  keyFor: (certificate: Uint8Array) => Promise<CaKeyPair | undefined>;
} {
  const token = tokenOf(parsePkcs11Uri(o.uri));
  const misses = new Map<string, number>();
  // The issuer's clock paces a key's reconnects after a token failure.
  const keyOpts = { module: o.module, pinFile: o.pinFile, clock: o.clock };
  return {
    async nextSource(active) {
      const uri = formatPkcs11Uri({ ...token, object: nextKeyLabel(o.clock.now(), o.random) });
      const key = await generatePkcs11CaKey({ ...keyOpts, uri });
      try {
        const now = o.clock.now();
        const lifetime = Date.parse(active.validTo) - Date.parse(active.validFrom);
        const generation = Number(/#(\d+)/.exec(active.subject)?.[1] ?? '1') + 1;
        const certificate = await createRootCaWithKey({
          trustDomain: o.trustDomain,
          key,
          notBefore: now - 60_000,
          notAfter: now - 60_000 + lifetime,
          random: o.random,
          generation,
        });
        return { certificate, key: own(o.owned, key) };
      } catch (e) {
        await key.close();
        throw e;
      }
    },
    async keyFor(certificate) {
      const x = new X509Certificate(Buffer.from(certificate));
      const print = x.fingerprint256;
      const missed = misses.get(print);
      if (missed !== undefined && o.clock.now() - missed < MISS_MS) return undefined;
      const found = await findKeyByPoint(keyOpts, token, pointOf(x));
      if (found === undefined) {
        misses.set(print, o.clock.now());
        return undefined;
      }
      misses.delete(print);
      const key = await openPkcs11CaKey({ ...keyOpts, uri: formatPkcs11Uri(found), certificate });
      const same = key.spki.equals(x.publicKey.export({ format: 'der', type: 'spki' }));
      if (!same) {
        await key.close();
        return undefined;
      }
      return { certificate, key: own(o.owned, key) };
    },
  };
}
