/**
 * PCR values for the OTA phases: parse `0=<hex>` pairs given to the vendor tool, read the live
 * values from a TPM (`--from-tpm`, and post-boot's check of the new measurements) and extend a
 * PCR the way a measured boot does (TPM2_PCR_Extend, Part 3 §22.2).
 */
import { execute } from '../attestors/tpm/client/execute.ts';
import { PCR_Extend, PCR_Read } from '../attestors/tpm/commands/pcr.ts';
import type { TpmTransport } from '../attestors/tpm/transport/transport.ts';
import { TPM_ALG } from '../attestors/tpm/wire/constants.ts';
import { HookError } from './errors.ts';

export type PcrBank = 'sha1' | 'sha256' | 'sha384' | 'sha512';
const ALG: Record<PcrBank, number> = {
  sha1: TPM_ALG.SHA1,
  sha256: TPM_ALG.SHA256,
  sha384: TPM_ALG.SHA384,
  sha512: TPM_ALG.SHA512,
};
const SIZE: Record<PcrBank, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

export function isBank(s: string): s is PcrBank {
  return s in SIZE;
}

/** `['0=ab..', '7=cd..']` → `{ 0: 'ab..', 7: 'cd..' }`, checked against the bank's digest size. */
export function parsePcrPairs(pairs: readonly string[], bank: PcrBank): Record<number, string> {
  const out: Record<number, string> = {};
  for (const pair of pairs) {
    const m = /^(\d{1,2})=([0-9a-fA-F]+)$/.exec(pair.trim());
    const index = Number(m?.[1]);
    if (m === null || index > 23)
      throw new HookError('ERR_HOOK_PCR_VALUES', `'${pair}' is not INDEX=HEX with INDEX 0..23`);
    const hex = (m[2] as string).toLowerCase();
    if (hex.length !== SIZE[bank] * 2)
      throw new HookError(
        'ERR_HOOK_PCR_VALUES',
        `PCR ${index}: ${bank} values are ${SIZE[bank] * 2} hex digits`,
      );
    if (out[index] !== undefined) throw new HookError('ERR_HOOK_PCR_VALUES', `PCR ${index} given twice`);
    out[index] = hex;
  }
  if (Object.keys(out).length === 0) throw new HookError('ERR_HOOK_PCR_VALUES', 'no PCR values given');
  return out;
}

/** `0,1,7` → [0, 1, 7] (sorted, unique, 0..23). */
export function parsePcrList(text: string): number[] {
  const list = text.split(',').map((s) => s.trim());
  if (list.some((s) => !/^\d{1,2}$/.test(s) || Number(s) > 23))
    throw new HookError('ERR_HOOK_PCR_VALUES', `'${text}' is not a list of PCR indices 0..23`);
  return [...new Set(list.map(Number))].sort((a, b) => a - b);
}

/** Read the current values of `indices` in `bank` (lowercase hex), 8 per TPM2_PCR_Read. */
export async function readPcrs(
  transport: TpmTransport,
  bank: PcrBank,
  indices: readonly number[],
): Promise<Record<number, string>> {
  const out: Record<number, string> = {};
  for (let i = 0; i < indices.length; i += 8) {
    const chunk = indices.slice(i, i + 8);
    const r = await execute(transport, PCR_Read, { pcrSelectionIn: [{ hash: ALG[bank], pcrs: chunk }] });
    const got = r.pcrSelectionOut.flatMap((s) => s.pcrs);
    if (got.length !== chunk.length || r.pcrValues.length !== chunk.length)
      throw new HookError('ERR_HOOK_PCR_VALUES', `the TPM does not report ${bank} PCRs ${chunk.join(',')}`);
    got.forEach((pcr, j) => {
      out[pcr] = Buffer.from(r.pcrValues[j] as Uint8Array).toString('hex');
    });
  }
  return out;
}

/** Extend PCR `index` of `bank` with `digest` (a measurement), as the boot chain does. */
export async function extendPcr(
  transport: TpmTransport,
  index: number,
  bank: PcrBank,
  digest: Uint8Array,
): Promise<void> {
  await execute(transport, PCR_Extend, { pcrHandle: index, digests: [{ hash: ALG[bank], digest }] });
}

/** The PCRs of `expected` whose measured value differs: `[]` when everything matches. */
export function pcrDifferences(
  expected: Readonly<Record<number, string>>,
  measured: Readonly<Record<number, string>>,
): number[] {
  return Object.keys(expected)
    .map(Number)
    .filter((i) => expected[i] !== measured[i]);
}
