/**
 * TEST ONLY: the real issuer, in process, for an agent that attests with a TPM (swtpm or the
 * TypeScript simulator): dev CA and TLS files under `<dir>/issuer`, TPM attestation trusting the
 * TPM's EK CA, gateways registered on first attestation, any PCR values accepted. Benchmarks
 * import it too. The OTA tests pass `more` (virtual clock, seeded random, vendor firmware keys,
 * their own store) and restart the issuer on the same port from the returned `options`.
 *
 * @example
 * ```ts
 * const { issuer, files } = await startTpmIssuer(dir, { roots: [swtpm.root], intermediates: [swtpm.intermediate], pcrSelection });
 * `upstream: { endpoints: ["${issuer.url}"], caFile: ${files.paths.caCertificate} }`
 * ```
 */
import type { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { systemClock } from '../../../../runtime/core/clock.ts';
import { cryptoRandom } from '../../../../runtime/core/random.ts';
import { createDevIssuerFiles, type DevIssuerFiles } from '../../../../runtime/issuer/dev.ts';
import {
  type RunningIssuer,
  type StartIssuerOptions,
  startIssuer,
} from '../../../../runtime/issuer/start.ts';
import { openMemoryStore } from '../../../../runtime/issuer/store.ts';

export async function startTpmIssuer(
  dir: string,
  tpm: {
    readonly roots: readonly X509Certificate[];
    readonly intermediates: readonly X509Certificate[];
    readonly pcrSelection: string;
    /** Default `any`: every PCR value accepted. */
    readonly pcrPolicy?: 'any' | 'manifests';
  },
  /** Options beyond these (clock and random also build the dev files). */
  more: Partial<StartIssuerOptions> = {},
): Promise<{ issuer: RunningIssuer; files: DevIssuerFiles; options: StartIssuerOptions }> {
  const clock = more.clock ?? systemClock;
  const random = more.random ?? cryptoRandom;
  const files = await createDevIssuerFiles(join(dir, 'issuer'), {
    trustDomain: 'fleet.example',
    clock,
    random,
  });
  const options: StartIssuerOptions = {
    trustDomain: 'fleet.example',
    store: more.store ?? (await openMemoryStore()),
    ca: files.ca,
    tls: files.tls,
    methods: {
      tpm: {
        manufacturerRoots: tpm.roots,
        intermediates: tpm.intermediates,
        pcrSelection: tpm.pcrSelection,
        autoRegister: true,
        pcrPolicy: tpm.pcrPolicy ?? 'any',
      },
    },
    ...more,
    clock,
    random,
  };
  return { issuer: await startIssuer(options), files, options };
}
