/**
 * TPM2_GetCapability (Part 3 §30.2) for the capabilities a client asks about — ALGS, HANDLES,
 * COMMANDS, PCRS, TPM_PROPERTIES, PCR_PROPERTIES, ECC_CURVES — paged with `moreData`; and
 * TPM2_GetRandom (§16.1), which returns at most 64 bytes (the largest digest) per call.
 */

import type { Writer } from '../../../attestors/tpm/wire/buffer.ts';
import {
  HASHES,
  TPM_ALG,
  TPM_CAP,
  TPM_CC,
  TPM_ECC,
  TPM_HT,
  TPM_PT,
  TPM_RH,
} from '../../../attestors/tpm/wire/constants.ts';
import { RC, rcParam } from '../rc.ts';
import type { CommandSpec } from '../spec.ts';
import {
  FIRMWARE_VERSION,
  MANUFACTURER,
  MAX_ACTIVE_SESSIONS,
  MAX_OBJECTS,
  PCR_COUNT,
  type Tpm,
} from '../tpm.ts';

export const MAX_PERSISTENT = 16;
const MAX_CAP = 64;

/** TPMA_ALGORITHM: asymmetric 1, symmetric 2, hash 4, object 8, signing 0x100, encrypting 0x200. */
const ALGS: readonly [number, number][] = [
  [TPM_ALG.RSA, 0x9],
  [TPM_ALG.SHA1, 0x4],
  [TPM_ALG.AES, 0x2],
  [TPM_ALG.KEYEDHASH, 0x8],
  [TPM_ALG.SHA256, 0x4],
  [TPM_ALG.SHA384, 0x4],
  [TPM_ALG.SHA512, 0x4],
  [TPM_ALG.NULL, 0x0],
  [TPM_ALG.RSASSA, 0x101],
  [TPM_ALG.OAEP, 0x201],
  [TPM_ALG.ECDSA, 0x101],
  [TPM_ALG.ECC, 0x9],
  [TPM_ALG.CFB, 0x202],
];

const ascii = (s: string): number => Buffer.from(s.padEnd(4, '\0'), 'latin1').readUInt32BE(0);

function properties(tpm: Tpm): [number, number][] {
  const loaded = tpm.objects.filter((o) => o !== undefined).length;
  const sessions = tpm.sessions.size + tpm.savedSessions.size;
  const persistent = tpm.state.persistent.size;
  return [
    [0x100, ascii('2.0')],
    [0x101, 0],
    [0x102, 164],
    [0x103, 1],
    [0x104, 2026],
    [TPM_PT.MANUFACTURER, MANUFACTURER],
    [TPM_PT.VENDOR_STRING_1, ascii('edge')],
    [TPM_PT.VENDOR_STRING_2, ascii('ward')],
    [TPM_PT.VENDOR_STRING_3, ascii(' sim')],
    [TPM_PT.VENDOR_STRING_4, 0],
    [0x10a, 1],
    [TPM_PT.FIRMWARE_VERSION_1, Number(FIRMWARE_VERSION >> 32n)],
    [TPM_PT.FIRMWARE_VERSION_2, Number(FIRMWARE_VERSION & 0xffffffffn)],
    [TPM_PT.INPUT_BUFFER, 1024],
    [0x10e, MAX_OBJECTS],
    [0x10f, MAX_PERSISTENT],
    [0x110, MAX_OBJECTS],
    [0x111, MAX_ACTIVE_SESSIONS],
    [TPM_PT.PCR_COUNT, PCR_COUNT],
    [TPM_PT.PCR_SELECT_MIN, 3],
    [0x114, 0xffff],
    [0x116, 0],
    [0x117, 2048],
    [0x118, 0],
    [0x119, 2 ** 22],
    [0x11a, TPM_ALG.SHA256],
    [0x11b, TPM_ALG.AES],
    [0x11c, 256],
    [0x11d, 255],
    [TPM_PT.MAX_COMMAND_SIZE, 4096],
    [TPM_PT.MAX_RESPONSE_SIZE, 4096],
    [TPM_PT.MAX_DIGEST, 64],
    [0x121, 2048],
    [0x122, 512],
    [0x123, 1],
    [0x124, 0],
    [0x12c, 1024],
    [0x12d, 0],
    [TPM_PT.PERMANENT, (tpm.lockedOut ? 1 << 9 : 0) | (1 << 10)],
    [TPM_PT.STARTUP_CLEAR, 0x0000000f],
    [0x202, tpm.state.nv.size],
    [0x203, loaded],
    [0x204, MAX_OBJECTS - loaded],
    [0x205, sessions],
    [0x206, MAX_ACTIVE_SESSIONS - sessions],
    [0x207, MAX_OBJECTS - loaded],
    [0x208, persistent],
    [0x209, MAX_PERSISTENT - persistent],
    [0x20a, 0],
    [0x20b, 0],
    [0x20c, 0],
    [0x20d, 3],
    [TPM_PT.LOCKOUT_COUNTER, tpm.state.daFailedTries],
    [0x20f, tpm.config.maxTries],
    [0x210, 7200],
    [0x211, 86400],
    [0x212, 0],
    [0x213, 0],
    [0x214, 0],
  ];
}

function handles(tpm: Tpm, type: number): number[] {
  switch (type) {
    case TPM_HT.PCR:
      return Array.from({ length: PCR_COUNT }, (_, i) => i);
    case TPM_HT.NV_INDEX:
      return [...tpm.state.nv.keys()];
    case TPM_HT.HMAC_SESSION:
    case TPM_HT.POLICY_SESSION:
      return [...tpm.sessions.keys(), ...tpm.savedSessions].filter((h) => h >>> 24 === type);
    case TPM_HT.PERMANENT:
      return [TPM_RH.OWNER, TPM_RH.NULL, TPM_RH.PW, TPM_RH.LOCKOUT, TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM];
    case TPM_HT.TRANSIENT:
      return tpm.objects.flatMap((o, i) => (o === undefined ? [] : [0x80000000 + i]));
    case TPM_HT.PERSISTENT:
      return [...tpm.state.persistent.keys()];
    default:
      return [];
  }
}

/** PCR attributes: TPM_PT_PCR_SAVE, EXTEND_L0, RESET_L0 (TPMS_TAGGED_PCR_SELECT). */
const PCR_PROPERTIES: readonly [number, number[]][] = [
  [0x00, Array.from({ length: 16 }, (_, i) => i)],
  [0x01, [...Array.from({ length: 17 }, (_, i) => i), 23]],
  [0x02, [16, 23]],
];

function page<T>(items: readonly T[], count: number): { list: T[]; more: boolean } {
  const n = Math.min(count, MAX_CAP);
  return { list: items.slice(0, n), more: items.length > n };
}

function bits(pcrs: readonly number[]): number[] {
  const b = [0, 0, 0];
  for (const p of pcrs) b[p >> 3] = (b[p >> 3] as number) | (1 << (p & 7));
  return b;
}

function capability(tpm: Tpm, cap: number, prop: number, count: number, w: Writer): void {
  const body = (more: boolean, fill: () => void): void => {
    w.u8(more ? 1 : 0).u32(cap);
    fill();
  };
  switch (cap) {
    case TPM_CAP.ALGS: {
      const { list, more } = page(
        ALGS.filter(([a]) => a >= prop),
        count,
      );
      body(more, () => {
        w.u32(list.length);
        for (const [a, attrs] of list) w.u16(a).u32(attrs);
      });
      return;
    }
    case TPM_CAP.HANDLES: {
      const all = handles(tpm, prop >>> 24)
        .map((h) => h >>> 0)
        .filter((h) => h >= prop >>> 0)
        .sort((a, b) => a - b);
      const { list, more } = page(all, count);
      body(more, () => {
        w.u32(list.length);
        for (const h of list) w.u32(h);
      });
      return;
    }
    case TPM_CAP.COMMANDS: {
      const { list, more } = page(
        tpm.commandAttributes.filter(([c]) => c >= prop),
        count,
      );
      body(more, () => {
        w.u32(list.length);
        for (const [, attrs] of list) w.u32(attrs);
      });
      return;
    }
    case TPM_CAP.PCRS: {
      const banks = [TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512];
      body(false, () => {
        w.u32(banks.length);
        for (const alg of banks) {
          w.u16(alg).u8(3);
          const on = tpm.config.banks.includes(alg) ? 0xff : 0;
          w.u8(on).u8(on).u8(on);
        }
      });
      return;
    }
    case TPM_CAP.TPM_PROPERTIES: {
      const { list, more } = page(
        properties(tpm).filter(([p]) => p >= prop),
        count,
      );
      body(more, () => {
        w.u32(list.length);
        for (const [p, v] of list) w.u32(p).u32(v >>> 0);
      });
      return;
    }
    case TPM_CAP.PCR_PROPERTIES: {
      const { list, more } = page(
        PCR_PROPERTIES.filter(([p]) => p >= prop),
        count,
      );
      body(more, () => {
        w.u32(list.length);
        for (const [p, pcrs] of list) {
          w.u32(p).u8(3);
          for (const b of bits(pcrs)) w.u8(b);
        }
      });
      return;
    }
    case TPM_CAP.ECC_CURVES: {
      const curves = [TPM_ECC.NIST_P256, TPM_ECC.NIST_P384, TPM_ECC.NIST_P521].filter((c) => c >= prop);
      const { list, more } = page(curves, count);
      body(more, () => {
        w.u32(list.length);
        for (const c of list) w.u16(c);
      });
      return;
    }
    default:
      throw rcParam(RC.VALUE, 1);
  }
}

export const capabilityCommands: readonly CommandSpec[] = [
  {
    cc: TPM_CC.GetCapability,
    name: 'GetCapability',
    handles: [],
    auth: [],
    run(ctx) {
      const cap = ctx.at(1).u32();
      const prop = ctx.at(2).u32();
      const count = ctx.at(3).u32();
      ctx.end();
      capability(ctx.tpm, cap, prop, count, ctx.out);
    },
  },
  {
    cc: TPM_CC.GetRandom,
    name: 'GetRandom',
    handles: [],
    auth: [],
    run(ctx) {
      const n = ctx.at(1).u16();
      ctx.end();
      const max = Math.max(...Object.values(HASHES).map((h) => h.size));
      ctx.out.tpm2b(ctx.tpm.config.random.bytes(Math.min(n, max)));
    },
  },
];
