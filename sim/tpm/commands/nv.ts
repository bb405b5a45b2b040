/**
 * NV commands the client uses (Part 3 §31.6 NV_ReadPublic, §31.13 NV_Read): EK certificates are
 * read in chunks of at most NV_BUFFER_MAX (1024) bytes, authorized by the owner (OWNERREAD), the
 * platform (PPREAD) or the index itself (AUTHREAD).
 */
import { digest } from '../../../attestors/tpm/crypto/kdf.ts';
import { Writer } from '../../../attestors/tpm/wire/buffer.ts';
import { TPM_CC, TPM_RH, TPMA_NV } from '../../../attestors/tpm/wire/constants.ts';
import { has } from '../object.ts';
import { RC, rc, rcParam } from '../rc.ts';
import type { CommandSpec } from '../spec.ts';
import type { NvIndex } from '../state.ts';

const READLOCKED = 1 << 28;
export const NV_BUFFER_MAX = 1024;

export function nvPublic(nv: NvIndex): Buffer {
  return new Writer()
    .u32(nv.index)
    .u16(nv.nameAlg)
    .u32(nv.attributes)
    .tpm2b(nv.authPolicy)
    .u16(nv.data.length)
    .finish();
}

/** NV Name: nameAlg ‖ H(TPMS_NV_PUBLIC). */
export function nvName(nv: NvIndex): Buffer {
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(nv.nameAlg);
  return Buffer.concat([alg, digest(nv.nameAlg, nvPublic(nv))]);
}

export const nvCommands: readonly CommandSpec[] = [
  {
    cc: TPM_CC.NV_ReadPublic,
    name: 'NV_ReadPublic',
    handles: ['nv'],
    auth: [],
    run(ctx) {
      ctx.end();
      const nv = ctx.tpm.state.nv.get(ctx.handles[0] as number) as NvIndex;
      ctx.out.tpm2b(nvPublic(nv)).tpm2b(nvName(nv));
    },
  },
  {
    cc: TPM_CC.NV_Read,
    name: 'NV_Read',
    handles: ['nvAuth', 'nv'],
    auth: ['user'],
    run(ctx) {
      const size = ctx.at(1).u16();
      const offset = ctx.at(2).u16();
      ctx.end();
      const [authHandle, index] = ctx.handles as [number, number];
      const nv = ctx.tpm.state.nv.get(index) as NvIndex;
      const a = nv.attributes;
      const allowed =
        authHandle === TPM_RH.OWNER
          ? has(a, TPMA_NV.OWNERREAD)
          : authHandle === TPM_RH.PLATFORM
            ? has(a, TPMA_NV.PPREAD)
            : authHandle === index && has(a, TPMA_NV.AUTHREAD);
      if (!allowed) throw rc(RC.NV_AUTHORIZATION);
      if (has(a, READLOCKED)) throw rc(RC.NV_LOCKED);
      if (!has(a, TPMA_NV.WRITTEN)) throw rc(RC.NV_UNINITIALIZED);
      if (size > NV_BUFFER_MAX) throw rcParam(RC.VALUE, 1);
      if (offset > nv.data.length) throw rcParam(RC.VALUE, 2);
      if (offset + size > nv.data.length) throw rc(RC.NV_RANGE);
      ctx.out.tpm2b(nv.data.subarray(offset, offset + size));
    },
  },
];
