/**
 * edgeward's TypeScript TPM 2.0 simulator: the embedded default that lets `npm start` run real
 * TPM attestation on a machine with no TPM and no swtpm. It implements exactly the commands
 * edgeward's client uses, byte for byte over the same transport seam, with state (seeds,
 * persistent EKs, EK certificates, clock and counters) in a directory.
 *
 * @example
 * ```ts
 * const tpm = await openSimTransport('/var/lib/edgeward/tpm-sim');
 * const resp = await tpm.send(getRandomCommand);   // raw TPM 2.0 bytes in and out
 * await tpm.reset();                                // power cycle: PCRs cleared, resetCount + 1
 * tpm.failNext(2);                                  // next two commands → TPM_RC_RETRY
 * await tpm.close();
 * ```
 *
 * The manufacturer CA that signed the EK certificates is written to
 * `<stateDir>/manufacturer-root-ca.pem` and `manufacturer-intermediate-ca.pem`; an issuer trusts
 * it only when told to (dev mode).
 */
import { join } from 'node:path';
import type { TpmTransport } from '../../attestors/tpm/transport/transport.ts';
import { TPM_ALG } from '../../attestors/tpm/wire/constants.ts';
import { type Clock, systemClock } from '../../runtime/core/clock.ts';
import { type Logger, nullLogger } from '../../runtime/core/logger.ts';
import { cryptoRandom, type Random } from '../../runtime/core/random.ts';
import { SimError } from '../errors.ts';
import { type EkType, provision } from './provision.ts';
import { COMMAND_ATTRIBUTES } from './registry.ts';
import { INTERMEDIATE_CA_FILE, ROOT_CA_FILE, StateStore } from './store.ts';
import { Tpm } from './tpm.ts';
import { type SimControls, SimTransport } from './transport.ts';

export type { EkType } from './provision.ts';
export { EK_HANDLES } from './provision.ts';
export type { SimControls } from './transport.ts';

export type PcrBankName = 'sha1' | 'sha256' | 'sha384' | 'sha512';
const BANKS: Readonly<Record<PcrBankName, number>> = {
  sha1: TPM_ALG.SHA1,
  sha256: TPM_ALG.SHA256,
  sha384: TPM_ALG.SHA384,
  sha512: TPM_ALG.SHA512,
};

export interface SimOptions {
  readonly clock?: Clock;
  readonly random?: Random;
  readonly logger?: Logger;
  /** Send Startup(CLEAR) at power-on, as firmware (or swtpm's startup-clear flag) does. Default true. */
  readonly autoStartup?: boolean;
  /** Active PCR banks. Default ['sha256'] (Debian's swtpm_setup default). */
  readonly pcrBanks?: readonly PcrBankName[];
  /** EKs provisioned in a fresh state directory. Default ['rsa', 'ecc', 'ecc384']. */
  readonly ekTypes?: readonly EkType[];
  /** libtpms 0.9.2's TPM_RC_RETRY on the first authValue use of a DA object after Startup. Default false. */
  readonly retryQuirk?: boolean;
  /** Failed DA-protected authorizations before lockout. Default 32. */
  readonly maxTries?: number;
  /** Delay every response by this many ms on `clock` (a slow TPM). Default 0. */
  readonly responseDelayMs?: number;
}

const DEFAULT_EKS: readonly EkType[] = ['rsa', 'ecc', 'ecc384'];

export type SimTpmTransport = TpmTransport & SimControls;

function check(options: SimOptions): void {
  const bad = (what: string): never => {
    throw new SimError('ERR_SIM_OPTIONS', `openSimTransport: ${what}`);
  };
  const banks = options.pcrBanks ?? ['sha256'];
  if (banks.length === 0 || banks.some((b) => BANKS[b] === undefined))
    bad('pcrBanks must name sha1/sha256/sha384/sha512');
  const eks = options.ekTypes ?? DEFAULT_EKS;
  if (eks.some((e) => !DEFAULT_EKS.includes(e))) bad("ekTypes must name 'rsa', 'ecc' or 'ecc384'");
  if (options.maxTries !== undefined && (!Number.isSafeInteger(options.maxTries) || options.maxTries < 1))
    bad('maxTries must be a positive integer');
  if (options.responseDelayMs !== undefined && !(options.responseDelayMs >= 0))
    bad('responseDelayMs must be >= 0');
}

/**
 * Open (creating and provisioning if empty) the simulated TPM in `stateDir`. The directory is
 * locked until `close()`; a state file that is not mode 0600 or does not parse is refused.
 */
export async function openSimTransport(stateDir: string, options: SimOptions = {}): Promise<SimTpmTransport> {
  if (typeof stateDir !== 'string' || stateDir === '')
    throw new SimError('ERR_SIM_OPTIONS', 'stateDir is required');
  check(options);
  const clock = options.clock ?? systemClock;
  const random = options.random ?? cryptoRandom;
  const logger = options.logger ?? nullLogger;
  const store = new StateStore(stateDir);
  store.lock();
  try {
    const fresh = !store.exists();
    const state = fresh
      ? await provision(store, random, clock.now(), options.ekTypes ?? DEFAULT_EKS)
      : store.load();
    if (fresh) logger.info('tpm simulator: provisioned a new TPM', { stateDir });
    const tpm = new Tpm(
      {
        clock,
        random,
        logger,
        banks: (options.pcrBanks ?? ['sha256']).map((b) => BANKS[b]),
        retryQuirk: options.retryQuirk ?? false,
        maxTries: options.maxTries ?? 32,
      },
      store,
      state,
    );
    tpm.commandAttributes = COMMAND_ATTRIBUTES;
    const transport = new SimTransport({
      tpm,
      clock,
      logger,
      autoStartup: options.autoStartup ?? true,
      delayMs: options.responseDelayMs ?? 0,
      paths: { root: join(stateDir, ROOT_CA_FILE), intermediate: join(stateDir, INTERMEDIATE_CA_FILE) },
    });
    // Power-on. A state whose last run ended without Shutdown is a power loss.
    transport.powerCycle(false);
    return transport;
  } catch (err) {
    store.unlock();
    throw err;
  }
}
