/**
 * What the OTA phases after pre-install work on: the store's raw db, the sealing of the data
 * key, the issuer, the TPM's PCRs and the agent's re-attestation. `from-config.ts` builds it from
 * the agent config (the CLI's composition root calls it); each part is a seam with a real backend
 * (classic-level, TPM seal, HTTPS issuer, TPM quote) and nothing else.
 */
import type { KeyObject } from 'node:crypto';
import type { Logger } from '../runtime/core/logger.ts';
import type { FirmwareManifest } from '../runtime/firmware/manifest.ts';
import type { X509Svid } from '../runtime/sources/types.ts';
import type { DataKeyProtector } from '../runtime/store/protector.ts';
import type { LevelDb } from '../runtime/store/sealed-store.ts';
import type { PcrBank } from './pcrs.ts';
import type { FirmwareStaging } from './staging.ts';

/**
 * The data key's sealing across an update. Without a PCR policy `current` survives the reboot
 * (TPM sealing without PCRs, or the 0600 key file) and `forReboot` answers undefined. With a
 * policy, `forReboot` seals to the PCR values the signed manifest promises (the PolicyPCR digest
 * is computed offline from them), so after the reboot the key opens only if the new firmware
 * measured as promised — there is never an unsealed transition. Unsealing needs no options: the
 * blob names its own PCR selection, so `current` opens both.
 */
export interface Sealing {
  readonly current: DataKeyProtector;
  readonly forReboot: (manifest: FirmwareManifest) => DataKeyProtector | undefined;
}

/** The identity re-established after boot, for the log and the caller. */
export interface Reattested {
  readonly spiffeId: string;
  readonly serial: string;
  readonly notAfter: number;
}

export interface HookContext {
  readonly stateDir: string;
  readonly db: LevelDb;
  readonly sealing: Sealing;
  readonly trusted: readonly KeyObject[];
  /** Publish the manifest envelope to the issuer as reference values. */
  readonly publish: (manifestText: string) => Promise<void>;
  /** Per-gateway staging at the issuer, with the SVID the store holds now (mTLS). */
  readonly staging?: { readonly issuer: FirmwareStaging; readonly currentSvid: () => Promise<X509Svid> };
  /** Read the live PCR values of `bank`; undefined when the attestor measures nothing (no TPM). */
  readonly readPcrs:
    | ((bank: PcrBank, indices: readonly number[]) => Promise<Record<number, string>>)
    | undefined;
  /** Attest afresh with the new measurements (store opened with `protector`), rotate the SVID. */
  readonly reattest: (protector: DataKeyProtector) => Promise<Reattested>;
  readonly now: () => number;
  readonly logger: Logger;
}
