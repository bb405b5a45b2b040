/**
 * Where the gateway's delegated CA key is made and kept (issue 14 item 5): in the TPM when the
 * attestor is a TPM (any transport: device, swtpm, simulator) — a TPM2_Create signing key whose
 * private part never leaves the TPM; the store keeps only the TPM-wrapped blob — and otherwise a
 * software P-256 key whose PKCS#8 lives only in the sealed store. Both give a `CaKey`
 * (runtime/svid/ca-key.ts), the one seam everything the CA signs goes through.
 *
 * A TPM key stays loaded while it is in use; opening the same blob again (the SVID renewed while
 * the CA carried over) gives the same TPM key, and only the most recently used TPM key stays
 * loaded, so rotations and failed exchanges never take the TPM's few object slots; another key is
 * flushed but stays usable (it loads again at its next signature).
 *
 * @example
 * ```ts
 * const caKeys = caKeysFor(attestor, newP256Key);
 * const { key, stored } = await caKeys.create();        // stored → GatewayRecord.caKey
 * const again = caKeys.open(caKeys.backend, stored);    // after a restart
 * ```
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { Attestor } from '../../attestors/attestor.ts';
import { AgentError } from '../errors.ts';
import { type CaKey, softwareCaKey } from '../svid/ca-key.ts';

/** Where the agent keeps a delegated CA key (a PKCS#11 token key is the issuer's only). */
export type CaKeyBackend = Exclude<CaKey['backend'], 'pkcs11'>;

export interface CaKeys {
  /** The backend new CA keys are made in. */
  readonly backend: CaKeyBackend;
  /** A new CA key, and the bytes the store keeps of it (PKCS#8, or the TPM key blob). */
  create(): Promise<{ key: CaKey; stored: Uint8Array }>;
  /** The key of stored bytes (a TPM key loads at its first use). */
  open(backend: CaKeyBackend, stored: Uint8Array): CaKey;
}

/** What a TPM attestor offers for the CA key (attestors/tpm/attestor.ts). */
interface TpmKeyHost {
  createSigningKey(): Promise<Uint8Array>;
  signingKey(blob: Uint8Array): CaKey & { load(): Promise<void>; unload(): Promise<void> };
}

function isTpmKeyHost(a: Attestor): a is Attestor & TpmKeyHost {
  const h = a as Partial<TpmKeyHost>;
  return a.method === 'tpm' && typeof h.createSigningKey === 'function' && typeof h.signingKey === 'function';
}

/** Software keys: PKCS#8 in the sealed store. */
export function softwareCaKeys(newKey: () => KeyObject): CaKeys {
  return {
    backend: 'software',
    async create() {
      const k = newKey();
      return { key: softwareCaKey(k), stored: k.export({ format: 'der', type: 'pkcs8' }) };
    },
    open: (backend, stored) => openSoftware(backend, stored),
  };
}

function openSoftware(backend: CaKeyBackend, stored: Uint8Array): CaKey {
  if (backend !== 'software')
    throw new AgentError(
      'ERR_CA_KEY_UNAVAILABLE',
      'the stored delegated CA key is in a TPM, and there is none',
    );
  let k: KeyObject;
  try {
    k = createPrivateKey({ key: Buffer.from(stored), format: 'der', type: 'pkcs8' });
  } catch (cause) {
    throw new AgentError('ERR_UPSTREAM_PROTOCOL', 'stored private key does not parse', {}, { cause });
  }
  return softwareCaKey(k);
}

type TpmKey = CaKey & { load(): Promise<void>; unload(): Promise<void> };

/**
 * TPM keys under the attestor's storage primary; software records (from before) still open.
 * A TPM without a resource manager (swtpm, a bare /dev/tpm0) has three transient object slots,
 * which the attestor needs too (AK, storage primary, sealed object): at most `keep` CA keys stay
 * loaded — the most recently used; using another one flushes the least recent first (it loads
 * again at its next use), so a rotation or a run of failed exchanges never fills the TPM.
 */
export function tpmCaKeys(host: TpmKeyHost, keep = 1): CaKeys {
  const keys = new Map<string, TpmKey>(); // by blob, most recently used last
  let evicting: Promise<void> = Promise.resolve();
  const touch = (id: string, key: TpmKey): Promise<void> => {
    keys.delete(id);
    keys.set(id, key);
    let n = 0;
    for (const [other, k] of [...keys].reverse()) {
      if (++n <= keep) continue;
      evicting = evicting.then(() => k.unload()).catch(() => {});
      if (n > keep + 8) keys.delete(other); // forget long-unused keys (they reload if used)
    }
    return evicting;
  };
  const openTpm = (blob: Uint8Array): CaKey => {
    const id = Buffer.from(blob).toString('base64');
    const key = keys.get(id) ?? (host.signingKey(blob) as TpmKey);
    if (!keys.has(id)) keys.set(id, key);
    return {
      backend: 'tpm',
      spki: key.spki,
      publicKey: key.publicKey,
      async sign(data) {
        await touch(id, key);
        return key.sign(data);
      },
      async load() {
        await touch(id, key);
        await key.load();
      },
      close: () => key.close(),
    } as CaKey;
  };
  return {
    backend: 'tpm',
    async create() {
      const stored = await host.createSigningKey();
      return { key: openTpm(stored), stored };
    },
    open: (backend, stored) => (backend === 'tpm' ? openTpm(stored) : openSoftware(backend, stored)),
  };
}

/** The TPM backend when the attestor is a TPM, software otherwise. */
export function caKeysFor(attestor: Attestor, newKey: () => KeyObject): CaKeys {
  return isTpmKeyHost(attestor) ? tpmCaKeys(attestor) : softwareCaKeys(newKey);
}

/**
 * Load a TPM-resident CA key now (a no-op for software keys): a blob this TPM no longer accepts
 * (owner cleared, another TPM) is ERR_ATTESTOR_KEY_BLOB, which makes the stored identity unusable;
 * any other failure (transport) is left for the first signature to report.
 */
export async function loadCaKey(key: CaKey): Promise<void> {
  const loadable = key as CaKey & { load?: () => Promise<void> };
  if (typeof loadable.load !== 'function') return;
  try {
    await loadable.load();
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_ATTESTOR_KEY_BLOB') throw err;
  }
}
