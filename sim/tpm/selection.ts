/**
 * TPML_PCR_SELECTION as the simulator accepts it: known hash algorithms only, and
 * `sizeofSelect` exactly 3 (24 PCRs), as libtpms requires (brief §6 P14). Errors name the
 * parameter the selection was.
 */
import type { Reader } from '../../attestors/tpm/wire/buffer.ts';
import { HASHES } from '../../attestors/tpm/wire/constants.ts';
import type { PcrBankSelection, PcrSelection } from '../../attestors/tpm/wire/pcr-selection.ts';
import { RC, rcParam } from './rc.ts';

export function readSelection(r: Reader, param: number): PcrSelection {
  const count = r.u32('TPML_PCR_SELECTION.count');
  if (count > 16) throw rcParam(RC.SIZE, param);
  const out: PcrBankSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hash = r.u16('hash');
    const size = r.u8('sizeofSelect');
    const bits = r.bytes(size, 'pcrSelect');
    if (HASHES[hash] === undefined) throw rcParam(RC.HASH, param);
    if (size !== 3) throw rcParam(RC.VALUE, param);
    const pcrs: number[] = [];
    for (let p = 0; p < 24; p++) if (((bits[p >> 3] as number) >> (p & 7)) & 1) pcrs.push(p);
    out.push({ hash, pcrs });
  }
  return out;
}
