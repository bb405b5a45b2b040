/**
 * The vendor tool behind `edgeward hook manifest create`: sign a firmware manifest (version, PCR
 * bank, expected PCR values) with the vendor's ECDSA P-256 firmware key. The values come from the
 * command line (`--pcr 0=<hex>`) or from a reference device's TPM running the new firmware
 * (`--from-tpm`), read through the TPM transport.
 *
 * @example
 * ```ts
 * const text = await createManifest({ keyFile: 'fw.key', version: '2.3.1', bank: 'sha256',
 *   pcrs: { 0: hex0, 7: hex7 } }, clock.now());
 * ```
 */

import { isEdgewardError } from '../runtime/core/error.ts';
import { signManifest } from '../runtime/firmware/manifest.ts';
import { HookError } from './errors.ts';
import { loadSigningKey } from './keys.ts';
import type { PcrBank } from './pcrs.ts';

export interface ManifestInput {
  readonly keyFile: string;
  readonly version: string;
  readonly bank: PcrBank;
  readonly pcrs: Readonly<Record<number, string>>;
}

/** The signed envelope text (JSON, ends with a newline). */
export async function createManifest(input: ManifestInput, now: number): Promise<string> {
  const key = await loadSigningKey(input.keyFile);
  try {
    return signManifest({ version: input.version, bank: input.bank, pcrs: input.pcrs }, key, now);
  } catch (err) {
    if (isEdgewardError(err))
      throw new HookError('ERR_HOOK_PCR_VALUES', `manifest not created: ${err.message}`, {}, { cause: err });
    throw err;
  }
}
