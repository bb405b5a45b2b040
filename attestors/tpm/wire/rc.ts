/**
 * TPM response codes decoded into a typed error (Part 2 §6.6; brief §1.4). Decode order matters:
 * bit 7 (format one) is checked before the warning bit, because e.g. 0x9A2 (BAD_AUTH, session 1)
 * and 0x922 (RETRY) overlap numerically.
 *
 * @example
 * ```ts
 * try { await tpm.unseal(h) } catch (e) { if (isRc(e, RC.POLICY_FAIL)) reseal() }
 * ```
 */
import { EdgewardError } from '../../../runtime/core/error.ts';

/** Base codes (format-one codes are 0x080 | n; format-zero 0x100 | n; warnings 0x900 | n). */
export const RC = {
  SUCCESS: 0x000,
  BAD_TAG: 0x01e,
  // format zero errors
  INITIALIZE: 0x100,
  FAILURE: 0x101,
  SEQUENCE: 0x103,
  DISABLED: 0x120,
  EXCLUSIVE: 0x121,
  AUTH_TYPE: 0x124,
  AUTH_MISSING: 0x125,
  POLICY: 0x126,
  PCR: 0x127,
  PCR_CHANGED: 0x128,
  UPGRADE: 0x12d,
  TOO_MANY_CONTEXTS: 0x12e,
  AUTH_UNAVAILABLE: 0x12f,
  REBOOT: 0x130,
  UNBALANCED: 0x131,
  COMMAND_SIZE: 0x142,
  COMMAND_CODE: 0x143,
  AUTHSIZE: 0x144,
  AUTH_CONTEXT: 0x145,
  NV_RANGE: 0x146,
  NV_SIZE: 0x147,
  NV_LOCKED: 0x148,
  NV_AUTHORIZATION: 0x149,
  NV_UNINITIALIZED: 0x14a,
  NV_SPACE: 0x14b,
  NV_DEFINED: 0x14c,
  BAD_CONTEXT: 0x150,
  CPHASH: 0x151,
  PARENT: 0x152,
  NEEDS_TEST: 0x153,
  NO_RESULT: 0x154,
  SENSITIVE: 0x155,
  // format one errors
  ASYMMETRIC: 0x081,
  ATTRIBUTES: 0x082,
  HASH: 0x083,
  VALUE: 0x084,
  HIERARCHY: 0x085,
  KEY_SIZE: 0x087,
  MGF: 0x088,
  MODE: 0x089,
  TYPE: 0x08a,
  HANDLE: 0x08b,
  KDF: 0x08c,
  RANGE: 0x08d,
  AUTH_FAIL: 0x08e,
  NONCE: 0x08f,
  PP: 0x090,
  SCHEME: 0x092,
  SIZE: 0x095,
  SYMMETRIC: 0x096,
  TAG: 0x097,
  SELECTOR: 0x098,
  INSUFFICIENT: 0x09a,
  SIGNATURE: 0x09b,
  KEY: 0x09c,
  POLICY_FAIL: 0x09d,
  INTEGRITY: 0x09f,
  TICKET: 0x0a0,
  RESERVED_BITS: 0x0a1,
  BAD_AUTH: 0x0a2,
  EXPIRED: 0x0a3,
  POLICY_CC: 0x0a4,
  BINDING: 0x0a5,
  CURVE: 0x0a6,
  ECC_POINT: 0x0a7,
  // warnings
  CONTEXT_GAP: 0x901,
  OBJECT_MEMORY: 0x902,
  SESSION_MEMORY: 0x903,
  MEMORY: 0x904,
  SESSION_HANDLES: 0x905,
  OBJECT_HANDLES: 0x906,
  LOCALITY: 0x907,
  YIELDED: 0x908,
  CANCELED: 0x909,
  TESTING: 0x90a,
  REFERENCE_H0: 0x910,
  NV_RATE: 0x920,
  LOCKOUT: 0x921,
  RETRY: 0x922,
  NV_UNAVAILABLE: 0x923,
} as const;

const NAMES = new Map<number, string>(Object.entries(RC).map(([k, v]) => [v, `TPM_RC_${k}`]));

/** Layer of a response code (bits 16–23): 0 = TPM, 0x0B = Linux resource manager. */
export interface DecodedRc {
  readonly raw: number;
  readonly layer: number;
  /** The base code, comparable with `RC.*`. */
  readonly code: number;
  readonly name: string;
  readonly format: 'one' | 'zero' | 'tpm12';
  readonly warning: boolean;
  readonly parameter?: number;
  readonly handle?: number;
  readonly session?: number;
  readonly retryable: boolean;
}

const RETRYABLE = new Set<number>([RC.RETRY, RC.YIELDED, RC.TESTING]);

export function decodeRc(raw: number): DecodedRc {
  const layer = (raw >>> 16) & 0xff;
  const rc = raw & 0xffff;
  let code: number;
  let format: DecodedRc['format'];
  let parameter: number | undefined;
  let handle: number | undefined;
  let session: number | undefined;
  if (rc & 0x080) {
    format = 'one';
    code = 0x080 | (rc & 0x03f);
    const n = (rc >> 8) & 0xf;
    if (rc & 0x040) parameter = n;
    else if (rc & 0x800) session = n & 0x7;
    else if ((n & 0x7) !== 0) handle = n & 0x7;
  } else if (rc & 0x100) {
    format = 'zero';
    code = rc & 0xfff;
  } else {
    format = 'tpm12';
    code = rc;
  }
  const warning = format === 'zero' && (rc & 0x900) === 0x900;
  const name = NAMES.get(code) ?? `TPM_RC_0x${code.toString(16).padStart(3, '0')}`;
  return {
    raw,
    layer,
    code,
    name,
    format,
    warning,
    ...(parameter !== undefined ? { parameter } : {}),
    ...(handle !== undefined ? { handle } : {}),
    ...(session !== undefined ? { session } : {}),
    retryable: layer === 0 && RETRYABLE.has(code),
  };
}

/** A TPM answered with a non-zero response code. `rc` says which, and where. */
export class TpmResponseError extends EdgewardError<'ERR_TPM_RESPONSE'> {
  readonly rc: DecodedRc;
  readonly command: string;

  constructor(raw: number, command: string) {
    const rc = decodeRc(raw);
    const where =
      rc.parameter !== undefined
        ? ` (parameter ${rc.parameter})`
        : rc.handle !== undefined
          ? ` (handle ${rc.handle})`
          : rc.session !== undefined
            ? ` (session ${rc.session})`
            : '';
    const layer = rc.layer === 0 ? '' : ` [layer 0x${rc.layer.toString(16)}]`;
    super('ERR_TPM_RESPONSE', `${command}: ${rc.name}${where} 0x${raw.toString(16)}${layer}`);
    this.rc = rc;
    this.command = command;
  }
}

/** True when `err` is a TPM response error with base code `code`. */
export function isRc(err: unknown, code: number): err is TpmResponseError {
  return err instanceof TpmResponseError && err.rc.code === code;
}
