/**
 * The seam that protects the store's data key at rest (ARCHITECTURE.md §4).
 *
 * - `attestorProtector`: the TPM seals the 32-byte data key (optionally to PCR values); the blob
 *   kept in the store is useless on any other TPM.
 * - `keyFileProtector` (see `key-file.ts`): for join-token gateways without a TPM, a 0600 file
 *   holds a key-encryption key; it warns at every start.
 *
 * @example
 * ```ts
 * const protector = attestorProtector(tpmAttestor, { pcrs: [7] });
 * const store = await SealedStore.open({ db, protector, random, logger });
 * ```
 */
import type { Attestor, SealOptions } from '../../attestors/attestor.ts';
import { AgentError } from '../errors.ts';

export interface DataKeyProtector {
  /** `tpm` or `key-file`: shown in status and logged at start. */
  readonly kind: 'tpm' | 'key-file';
  /** Wrap a fresh data key; the blob is stored in the clear next to the sealed values. */
  seal(dataKey: Uint8Array): Promise<Uint8Array>;
  /** Unwrap; throws `ERR_STORE_KEY` when this protector cannot open the blob. */
  unseal(blob: Uint8Array): Promise<Uint8Array>;
}

/** The data key sealed by the attestor's TPM (`supports.sealing`). */
export function attestorProtector(attestor: Attestor, options: SealOptions = {}): DataKeyProtector {
  if (!attestor.supports.sealing) throw new TypeError(`${attestor.method} attestor cannot seal a data key`);
  return {
    kind: 'tpm',
    seal: (dataKey) => attestor.seal(dataKey, options),
    async unseal(blob) {
      try {
        return await attestor.unseal(blob);
      } catch (cause) {
        throw new AgentError(
          'ERR_STORE_KEY',
          'the TPM could not unseal the store data key (other TPM, or PCR policy no longer met)',
          {},
          { cause },
        );
      }
    },
  };
}
