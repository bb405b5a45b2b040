/**
 * Policy digests computed in software exactly as the TPM extends a policy session's digest
 * (Part 3 §23; brief §3.15, §4.6, §5.1). Used to build sealing templates, to check EK templates
 * and by the simulator's policy sessions.
 */
import { Writer } from '../wire/buffer.ts';
import { HASHES, TPM_CC } from '../wire/constants.ts';
import { type PcrSelection, writePcrSelection } from '../wire/pcr-selection.ts';
import { digest } from './kdf.ts';

export function emptyPolicy(hashAlg: number): Buffer {
  return Buffer.alloc(HASHES[hashAlg]?.size ?? 32);
}

/** PolicySecret: d1 = H(old ‖ CC ‖ authName); new = H(d1 ‖ policyRef). */
export function policySecretUpdate(
  hashAlg: number,
  old: Uint8Array,
  authName: Uint8Array,
  policyRef: Uint8Array = new Uint8Array(),
): Buffer {
  const d1 = digest(hashAlg, old, new Writer().u32(TPM_CC.PolicySecret).finish(), authName);
  return digest(hashAlg, d1, policyRef);
}

/** PolicyPCR: new = H(old ‖ CC ‖ TPML_PCR_SELECTION ‖ pcrDigest). */
export function policyPcrUpdate(
  hashAlg: number,
  old: Uint8Array,
  selection: PcrSelection,
  pcrDigest: Uint8Array,
): Buffer {
  const w = new Writer().u32(TPM_CC.PolicyPCR);
  writePcrSelection(w, selection);
  return digest(hashAlg, old, w.finish(), pcrDigest);
}

/** The digest of PCR values concatenated in selection order. */
export function pcrValuesDigest(hashAlg: number, values: readonly Uint8Array[]): Buffer {
  return digest(hashAlg, ...values);
}
