/**
 * Authorization entries (TPMS_AUTH_COMMAND, Part 2 §10.13.2; brief §1.2): one per "@" handle, in
 * handle order. Password sessions (TPM_RS_PW) carry the authValue in clear; unsalted, unbound
 * policy sessions carry an empty HMAC (the TPM allows it when the session key is empty).
 */
import type { Writer } from '../wire/buffer.ts';
import { TPM_RH, TPMA_SESSION } from '../wire/constants.ts';

export type Auth =
  | { readonly kind: 'password'; readonly value?: Uint8Array }
  | {
      readonly kind: 'policy';
      readonly handle: number;
      /** Keep the session loaded after a successful command (default false: the TPM flushes it). */
      readonly continueSession?: boolean;
    };

/** The empty password: what the hierarchies and our keys use. */
export const EMPTY_PASSWORD: Auth = { kind: 'password' };

export function policyAuth(handle: number, continueSession = false): Auth {
  return { kind: 'policy', handle, continueSession };
}

export function writeAuth(w: Writer, a: Auth): void {
  if (a.kind === 'password') {
    w.u32(TPM_RH.PW)
      .tpm2b(new Uint8Array())
      .u8(TPMA_SESSION.continueSession)
      .tpm2b(a.value ?? new Uint8Array());
  } else {
    w.u32(a.handle)
      .tpm2b(new Uint8Array())
      .u8(a.continueSession ? TPMA_SESSION.continueSession : 0)
      .tpm2b(new Uint8Array());
  }
}
