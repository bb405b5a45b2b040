/**
 * tpm2-tools' PCR file (`tpm2_quote -o`, `tpm2_checkquote -f`; default "serialized" format), so
 * `edgeward tpm quote` output can be checked by the real `tpm2_checkquote`. It is the in-memory
 * little-endian layout of libtss2's C structures, not TPM wire format (brief §2.4):
 *
 * - TPML_PCR_SELECTION: u32 count, then 16 × { u16 hash, u8 sizeofSelect, u8[4] pcrSelect, 1 pad }
 * - u32 number of TPML_DIGEST that follow
 * - each TPML_DIGEST: u32 count, then 8 × { u16 size, u8[64] buffer } (8 PCRs per list)
 *
 * Layout checked against a file written by tpm2_quote 5.4 (668 bytes for 4 sha256 PCRs).
 */
import type { PcrSelection } from './wire/pcr-selection.ts';

const BANKS = 16;
const DIGESTS_PER_LIST = 8;

export function tpm2ToolsPcrFile(selection: PcrSelection, values: readonly Uint8Array[]): Buffer {
  if (selection.length > BANKS) throw new TypeError('at most 16 PCR banks');
  const sel = Buffer.alloc(4 + BANKS * 8);
  sel.writeUInt32LE(selection.length, 0);
  selection.forEach((bank, i) => {
    const off = 4 + i * 8;
    sel.writeUInt16LE(bank.hash, off);
    sel.writeUInt8(3, off + 2);
    for (const p of bank.pcrs) sel[off + 3 + (p >> 3)] = (sel[off + 3 + (p >> 3)] as number) | (1 << (p & 7));
  });
  const lists: Buffer[] = [];
  for (let i = 0; i < values.length; i += DIGESTS_PER_LIST) {
    const chunk = values.slice(i, i + DIGESTS_PER_LIST);
    const list = Buffer.alloc(4 + DIGESTS_PER_LIST * 66);
    list.writeUInt32LE(chunk.length, 0);
    chunk.forEach((v, j) => {
      if (v.length > 64) throw new TypeError('PCR value longer than 64 bytes');
      list.writeUInt16LE(v.length, 4 + j * 66);
      list.set(v, 4 + j * 66 + 2);
    });
    lists.push(list);
  }
  const n = Buffer.alloc(4);
  n.writeUInt32LE(lists.length, 0);
  return Buffer.concat([sel, n, ...lists]);
}
