/**
 * TPMS_ATTEST (Part 2 §10.12.12) and TPMT_SIGNATURE (Part 2 §11.3.4): what Quote and Certify
 * return, parsed strictly (no trailing bytes) and marshalled (the simulator produces them).
 */
import { AttestorError } from '../../errors.ts';
import { Reader, Writer } from './buffer.ts';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from './constants.ts';
import { type PcrSelection, readPcrSelection, writePcrSelection } from './pcr-selection.ts';

export interface ClockInfo {
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly safe: boolean;
}

export type Attested =
  | { readonly type: 0x8018; readonly pcrSelect: PcrSelection; readonly pcrDigest: Uint8Array }
  | { readonly type: 0x8017; readonly name: Uint8Array; readonly qualifiedName: Uint8Array };

export interface TpmsAttest {
  readonly magic: number;
  readonly qualifiedSigner: Uint8Array;
  readonly extraData: Uint8Array;
  readonly clockInfo: ClockInfo;
  readonly firmwareVersion: bigint;
  readonly attested: Attested;
}

export function parseAttest(bytes: Uint8Array): TpmsAttest {
  const r = new Reader(bytes, 'TPMS_ATTEST');
  const magic = r.u32('magic');
  if (magic !== TPM_GENERATED_VALUE) {
    throw new AttestorError(
      'ERR_ATTEST_QUOTE_INVALID',
      `TPMS_ATTEST magic 0x${magic.toString(16)} is not TPM_GENERATED_VALUE`,
    );
  }
  const type = r.u16('type');
  const qualifiedSigner = r.tpm2b('qualifiedSigner', 68);
  const extraData = r.tpm2b('extraData', 66);
  const clockInfo: ClockInfo = {
    clock: r.u64('clock'),
    resetCount: r.u32('resetCount'),
    restartCount: r.u32('restartCount'),
    safe: r.u8('safe') === 1,
  };
  const firmwareVersion = r.u64('firmwareVersion');
  let attested: Attested;
  if (type === TPM_ST.ATTEST_QUOTE) {
    attested = { type, pcrSelect: readPcrSelection(r), pcrDigest: r.tpm2b('pcrDigest', 64) };
  } else if (type === TPM_ST.ATTEST_CERTIFY) {
    attested = { type, name: r.tpm2b('name', 68), qualifiedName: r.tpm2b('qualifiedName', 68) };
  } else {
    throw new AttestorError(
      'ERR_ATTEST_QUOTE_INVALID',
      `unsupported TPMS_ATTEST type 0x${type.toString(16)}`,
    );
  }
  r.done('TPMS_ATTEST');
  return { magic, qualifiedSigner, extraData, clockInfo, firmwareVersion, attested };
}

export function marshalAttest(a: TpmsAttest): Buffer {
  const w = new Writer();
  w.u32(a.magic).u16(a.attested.type).tpm2b(a.qualifiedSigner).tpm2b(a.extraData);
  w.u64(a.clockInfo.clock)
    .u32(a.clockInfo.resetCount)
    .u32(a.clockInfo.restartCount)
    .u8(a.clockInfo.safe ? 1 : 0);
  w.u64(a.firmwareVersion);
  if (a.attested.type === TPM_ST.ATTEST_QUOTE) {
    writePcrSelection(w, a.attested.pcrSelect);
    w.tpm2b(a.attested.pcrDigest);
  } else {
    w.tpm2b(a.attested.name).tpm2b(a.attested.qualifiedName);
  }
  return w.finish();
}

export type TpmtSignature =
  | { readonly sigAlg: 0x0018; readonly hash: number; readonly r: Uint8Array; readonly s: Uint8Array }
  | { readonly sigAlg: 0x0014 | 0x0016; readonly hash: number; readonly sig: Uint8Array };

export function readSignature(rd: Reader): TpmtSignature {
  const sigAlg = rd.u16('sigAlg');
  switch (sigAlg) {
    case TPM_ALG.ECDSA:
      return { sigAlg, hash: rd.u16('hash'), r: rd.tpm2b('signatureR', 66), s: rd.tpm2b('signatureS', 66) };
    case TPM_ALG.RSASSA:
    case TPM_ALG.RSAPSS:
      return { sigAlg, hash: rd.u16('hash'), sig: rd.tpm2b('sig', 512) };
    default:
      throw new AttestorError(
        'ERR_ATTEST_QUOTE_INVALID',
        `unsupported signature algorithm 0x${sigAlg.toString(16)}`,
      );
  }
}

export function parseSignature(bytes: Uint8Array): TpmtSignature {
  const r = new Reader(bytes, 'TPMT_SIGNATURE');
  const sig = readSignature(r);
  r.done('TPMT_SIGNATURE');
  return sig;
}

export function writeSignature(w: Writer, s: TpmtSignature): void {
  w.u16(s.sigAlg).u16(s.hash);
  if (s.sigAlg === TPM_ALG.ECDSA) w.tpm2b(s.r).tpm2b(s.s);
  else w.tpm2b(s.sig);
}

export function marshalSignature(s: TpmtSignature): Buffer {
  const w = new Writer();
  writeSignature(w, s);
  return w.finish();
}
