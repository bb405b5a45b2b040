/**
 * PCR commands (Part 3 §22): PCR_Read (at most 8 digests per call, the rest left for the next
 * call), PCR_Extend (one digest per bank; banks not listed are not extended), PCR_Reset (only the
 * debug PCR 16 and PCR 23 from locality 0, as the PC Client profile says; others → LOCALITY).
 */
import { digest } from '../../../attestors/tpm/crypto/kdf.ts';
import { HASHES, TPM_CC } from '../../../attestors/tpm/wire/constants.ts';
import { type PcrSelection, writePcrSelection } from '../../../attestors/tpm/wire/pcr-selection.ts';
import { RC, rc, rcParam } from '../rc.ts';
import { readSelection } from '../selection.ts';
import type { CommandSpec } from '../spec.ts';
import type { Tpm } from '../tpm.ts';

/** PCRs whose change does not bump pcrUpdateCounter (debug and application PCRs). */
const NO_INCREMENT = new Set([16, 23]);
const RESETTABLE_L0 = new Set([16, 23]);
const EXTEND_NEEDS_LOCALITY = (pcr: number): boolean => pcr >= 17 && pcr <= 22;

/** Values of the selected PCRs of active banks, in selection order; inactive banks give none. */
export function selectedValues(tpm: Tpm, sel: PcrSelection): { selection: PcrSelection; values: Buffer[] } {
  const values: Buffer[] = [];
  const selection = sel.map((b) => {
    const bank = tpm.bank(b.hash);
    if (bank === undefined) return { hash: b.hash, pcrs: [] };
    for (const p of b.pcrs) values.push(bank[p] as Buffer);
    return b;
  });
  return { selection, values };
}

export const pcrCommands: readonly CommandSpec[] = [
  {
    cc: TPM_CC.PCR_Read,
    name: 'PCR_Read',
    handles: [],
    auth: [],
    run(ctx) {
      const sel = readSelection(ctx.at(1), 1);
      ctx.end();
      const values: Buffer[] = [];
      const outSel = sel.map((b) => {
        const bank = ctx.tpm.bank(b.hash);
        const pcrs: number[] = [];
        if (bank !== undefined)
          for (const p of b.pcrs) {
            if (values.length === 8) break;
            values.push(bank[p] as Buffer);
            pcrs.push(p);
          }
        return { hash: b.hash, pcrs };
      });
      ctx.out.u32(ctx.tpm.pcrUpdateCounter);
      writePcrSelection(ctx.out, outSel);
      ctx.out.u32(values.length);
      for (const v of values) ctx.out.tpm2b(v);
    },
  },
  {
    cc: TPM_CC.PCR_Extend,
    name: 'PCR_Extend',
    handles: ['pcr'],
    auth: ['user'],
    run(ctx) {
      const r = ctx.at(1);
      const count = r.u32();
      if (count > Object.keys(HASHES).length) throw rcParam(RC.SIZE, 1);
      const digests: { alg: number; value: Buffer }[] = [];
      for (let i = 0; i < count; i++) {
        const alg = r.u16();
        const h = HASHES[alg];
        if (h === undefined) throw rcParam(RC.HASH, 1);
        digests.push({ alg, value: r.bytes(h.size) });
      }
      ctx.end();
      const pcr = ctx.handles[0] as number;
      if (EXTEND_NEEDS_LOCALITY(pcr)) throw rc(RC.LOCALITY);
      for (const d of digests) {
        const bank = ctx.tpm.bank(d.alg);
        if (bank !== undefined) bank[pcr] = digest(d.alg, bank[pcr] as Buffer, d.value);
      }
      if (!NO_INCREMENT.has(pcr)) ctx.tpm.pcrUpdateCounter += 1;
    },
  },
  {
    cc: TPM_CC.PCR_Reset,
    name: 'PCR_Reset',
    handles: ['pcr'],
    auth: ['user'],
    run(ctx) {
      ctx.end();
      const pcr = ctx.handles[0] as number;
      if (!RESETTABLE_L0.has(pcr)) throw rc(RC.LOCALITY);
      for (const bank of ctx.tpm.pcrs.values()) (bank[pcr] as Buffer).fill(0);
    },
  },
];
