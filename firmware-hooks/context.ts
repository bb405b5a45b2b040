/**
 * What the OTA phases after pre-install work on, built by the composition root
 * (`runtime/cli/commands/hook.ts`) or by a test: the store's raw db, the three protectors of the
 * data key, the issuer, the TPM's PCRs and the agent's re-attestation. Each is a seam with a
 * real backend (classic-level, TPM seal, HTTPS issuer, TPM transport) and nothing else.
 */
import type { KeyObject } from 'node:crypto';
import type { Logger } from '../runtime/core/logger.ts';
import type { DataKeyProtector } from '../runtime/store/protector.ts';
import type { LevelDb } from '../runtime/store/sealed-store.ts';
import type { PcrBank } from './pcrs.ts';

/**
 * The data key's sealing before, during and after an update. With a PCR policy, `current` only
 * opens under the old firmware's values and `next` is bound to the values measured after boot;
 * `transition` (this TPM, no PCR policy) bridges the reboot. Without a policy all three may be
 * the same protector.
 */
export interface Sealing {
  readonly current: DataKeyProtector;
  readonly transition: DataKeyProtector;
  /** Built after boot, so that a PCR policy binds to the new measurements. */
  readonly next: () => Promise<DataKeyProtector>;
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
  /** Read the live PCR values of `bank`. */
  readonly readPcrs: (bank: PcrBank, indices: readonly number[]) => Promise<Record<number, string>>;
  /** Attest afresh with the new measurements (store opened with `protector`), rotate the SVID. */
  readonly reattest: (protector: DataKeyProtector) => Promise<Reattested>;
  readonly now: () => number;
  readonly logger: Logger;
}
