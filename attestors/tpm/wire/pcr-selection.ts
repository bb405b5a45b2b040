/**
 * TPML_PCR_SELECTION (Part 2 §10.9.7) and the `sha256:0,1,2,7` text form used in configs,
 * the CLI and the upstream protocol. `sizeofSelect` is always 3 (24 PCRs), as libtpms requires.
 */
import { AttestorError } from '../../errors.ts';
import type { Reader, Writer } from './buffer.ts';
import { HASHES, TPM_ALG } from './constants.ts';

export interface PcrBankSelection {
  readonly hash: number;
  /** Ascending, unique PCR indices 0..23. */
  readonly pcrs: readonly number[];
}
export type PcrSelection = readonly PcrBankSelection[];

const BANK_NAMES: Record<string, number> = {
  sha1: TPM_ALG.SHA1,
  sha256: TPM_ALG.SHA256,
  sha384: TPM_ALG.SHA384,
  sha512: TPM_ALG.SHA512,
};

/** Parse `sha256:0,1,2,7` (several banks separated by `+`). */
export function parsePcrSelection(text: string): PcrSelection {
  return text.split('+').map((part) => {
    const m = /^(sha1|sha256|sha384|sha512):(\d+(?:,\d+)*)$/.exec(part.trim());
    if (m === null) throw new AttestorError('ERR_ATTEST_QUOTE_INVALID', `bad PCR selection '${part}'`);
    const pcrs = [...new Set((m[2] as string).split(',').map(Number))].sort((a, b) => a - b);
    if (pcrs.some((p) => p > 23))
      throw new AttestorError('ERR_ATTEST_QUOTE_INVALID', `PCR index out of range in '${part}'`);
    return { hash: BANK_NAMES[m[1] as string] as number, pcrs };
  });
}

export function formatPcrSelection(sel: PcrSelection): string {
  return sel
    .map((b) => `${HASHES[b.hash]?.name ?? `0x${b.hash.toString(16)}`}:${b.pcrs.join(',')}`)
    .join('+');
}

export function writePcrSelection(w: Writer, sel: PcrSelection): void {
  w.u32(sel.length);
  for (const bank of sel) {
    w.u16(bank.hash).u8(3);
    const bits = [0, 0, 0];
    for (const p of bank.pcrs) bits[p >> 3] = (bits[p >> 3] as number) | (1 << (p & 7));
    for (const b of bits) w.u8(b);
  }
}

export function readPcrSelection(r: Reader): PcrSelection {
  const count = r.u32('TPML_PCR_SELECTION.count');
  if (count > 16) throw new AttestorError('ERR_TPM_MALFORMED', `TPML_PCR_SELECTION count ${count} too large`);
  const out: PcrBankSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hash = r.u16('TPMS_PCR_SELECTION.hash');
    const size = r.u8('sizeofSelect');
    if (size > 32) throw new AttestorError('ERR_TPM_MALFORMED', `sizeofSelect ${size} too large`);
    const bits = r.bytes(size, 'pcrSelect');
    const pcrs: number[] = [];
    for (let p = 0; p < size * 8; p++) if (((bits[p >> 3] as number) >> (p & 7)) & 1) pcrs.push(p);
    out.push({ hash, pcrs });
  }
  return out;
}

/** Selections are equal when they select the same PCRs of the same banks, in the same order. */
export function samePcrSelection(a: PcrSelection, b: PcrSelection): boolean {
  return (
    a.length === b.length &&
    a.every(
      (x, i) =>
        x.hash === b[i]?.hash &&
        x.pcrs.length === b[i]?.pcrs.length &&
        x.pcrs.every((p, j) => p === b[i]?.pcrs[j]),
    )
  );
}

/** How many digests the selection names. */
export function pcrCount(sel: PcrSelection): number {
  return sel.reduce((n, b) => n + b.pcrs.length, 0);
}
