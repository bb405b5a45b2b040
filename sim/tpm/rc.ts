/**
 * How the simulator fails a command: handlers throw `TpmRc` with the exact response code a
 * real TPM returns (format one codes carry the handle, parameter or session number, Part 2
 * §6.6). The dispatcher turns it into the 10-byte error response; it never leaves `send()`.
 *
 * @example
 * ```ts
 * if (nonce.length < 16) throw rcParam(RC.SIZE, 1); // 0x1D5
 * ```
 */
import { RC } from '../../attestors/tpm/wire/rc.ts';

export { RC };

/** TPM_RC_REFERENCE_S0: the first of seven warnings for an auth-area session that is not loaded. */
export const REFERENCE_S0 = 0x918;

export class TpmRc extends Error {
  readonly rc: number;

  constructor(rc: number) {
    super(`TPM_RC 0x${rc.toString(16)}`);
    this.rc = rc;
  }
}

/** Format-one code naming parameter `n` (1-based): `code | 0x040 | n << 8`. */
export function rcParam(code: number, n: number): TpmRc {
  return new TpmRc(code | 0x040 | ((n & 0xf) << 8));
}

/** Format-one code naming handle `n` (1-based): `code | n << 8`. */
export function rcHandle(code: number, n: number): TpmRc {
  return new TpmRc(code | ((n & 0x7) << 8));
}

/** Format-one code naming session `n` (1-based): `code | 0x800 | n << 8`. */
export function rcSession(code: number, n: number): TpmRc {
  return new TpmRc(code | 0x800 | ((n & 0x7) << 8));
}

/** A format-zero code or warning, unchanged. */
export function rc(code: number): TpmRc {
  return new TpmRc(code);
}
