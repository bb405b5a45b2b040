/**
 * Where the gateway's delegated CA key is made and kept (issue 14 item 5): in the TPM when the
 * attestor is a TPM (any transport: device, swtpm, simulator) — a TPM2_Create signing key whose
 * private part never leaves the TPM; the store keeps only the TPM-wrapped blob — and otherwise a
 * software P-256 key whose PKCS#8 lives only in the sealed store. Both give a `CaKey`
 * (runtime/svid/ca-key.ts), the one seam everything the CA signs goes through.
 *
 * A TPM key stays loaded while it is in use; opening the same blob again (the SVID renewed while
 * the CA carried over) gives the same key object, and only the two most recently used TPM keys
 * stay loaded (current and next CA), so rotations never leak TPM object slots; an older key is
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

export type CaKeyBackend = CaKey['backend'];

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
  signingKey(blob: Uint8Array): CaKey & { unload(): Promise<void> };
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

/** TPM keys under the attestor's storage primary; software records (from before) still open. */
export function tpmCaKeys(host: TpmKeyHost, keep = 2): CaKeys {
  const open = new Map<string, CaKey & { unload(): Promise<void> }>();
  const openTpm = (blob: Uint8Array): CaKey => {
    const id = Buffer.from(blob).toString('base64');
    const have = open.get(id);
    if (have !== undefined) {
      open.delete(id);
      open.set(id, have);
      return have;
    }
    const key = host.signingKey(blob);
    open.set(id, key);
    while (open.size > keep) {
      const [oldest, k] = open.entries().next().value as [string, CaKey & { unload(): Promise<void> }];
      open.delete(oldest);
      // Flushed from the TPM, still usable: a later signature loads it again.
      void k.unload();
    }
    return key;
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
