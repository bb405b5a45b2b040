/**
 * Error codes of `sim/`: the TypeScript TPM simulator, its state directory and the fault
 * controls. TPM-level failures never become exceptions: the simulator answers them with the
 * response code a real TPM returns. These codes are for the host side (state files, misuse of
 * a closed transport, a locked state directory).
 */
import { EdgewardError } from '../runtime/core/error.ts';

export type SimErrorCode =
  /** The state directory cannot be created, read or written. */
  | 'ERR_SIM_STATE_IO'
  /** A state file that does not parse, has an unknown version, or is not mode 0600. */
  | 'ERR_SIM_STATE_CORRUPT'
  /** Another live simulator holds the state directory's lock. */
  | 'ERR_SIM_LOCKED'
  /** The simulator transport was used after close(). */
  | 'ERR_SIM_CLOSED'
  /** Bad options to openSimTransport or to a fault control. */
  | 'ERR_SIM_OPTIONS';

export class SimError extends EdgewardError<SimErrorCode> {}
