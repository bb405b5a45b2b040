/**
 * Context management (Part 3 §28): FlushContext (the handle is a parameter: errors name
 * parameter 1), EvictControl (persist an owner/platform object, or remove it), ContextSave and
 * ContextLoad. Saved contexts are wrapped under a key derived from the null seed, so they are
 * useless after a TPM Reset; a saved session keeps its handle and loads back only once.
 */

import { objectName } from '../../../attestors/tpm/crypto/name.ts';
import { Reader, Writer } from '../../../attestors/tpm/wire/buffer.ts';
import { TPM_ALG, TPM_CC, TPM_HT, TPM_RH, TPMA_OBJECT } from '../../../attestors/tpm/wire/constants.ts';
import { parsePublic } from '../../../attestors/tpm/wire/public.ts';
import { has, type SimObject } from '../object.ts';
import { RC, rc, rcHandle, rcParam } from '../rc.ts';
import type { Session } from '../session.ts';
import type { CommandSpec } from '../spec.ts';
import { MAX_SESSIONS, type Tpm } from '../tpm.ts';
import { marshalSensitive, parseSensitive, unwrap, type WrapKey, wrap } from '../wrap.ts';
import { MAX_PERSISTENT } from './capability.ts';

const OWNER_RANGE = [0x81000000, 0x817fffff] as const;
const PLATFORM_RANGE = [0x81800000, 0x81ffffff] as const;

function contextKey(tpm: Tpm): WrapKey {
  return { hashAlg: TPM_ALG.SHA256, seed: tpm.contextKey('CONTEXT', 256), keyBits: 256 };
}

function binding(sequence: bigint, savedHandle: number, hierarchy: number): Buffer {
  return new Writer().u64(sequence).u32(savedHandle).u32(hierarchy).finish();
}

function saveObject(o: SimObject): Buffer {
  return new Writer()
    .u8(1)
    .tpm2b(o.pubBytes)
    .tpm2b(o.qualifiedName)
    .u32(o.hierarchy)
    .tpm2b(
      marshalSensitive({
        type: o.pub.type,
        authValue: o.authValue,
        seedValue: o.seedValue,
        sensitive: o.sensitive,
      }),
    )
    .finish();
}

function loadObject(r: Reader): SimObject {
  const pubBytes = r.tpm2b();
  const qualifiedName = r.tpm2b();
  const hierarchy = r.u32();
  const s = parseSensitive(r.tpm2b());
  return {
    pub: parsePublic(pubBytes),
    pubBytes,
    name: objectName(pubBytes),
    qualifiedName,
    hierarchy,
    authValue: s.authValue,
    seedValue: s.seedValue,
    sensitive: s.sensitive,
  };
}

function saveSession(s: Session): Buffer {
  return new Writer()
    .u8(2)
    .u32(s.handle)
    .u8(s.type === 'policy' ? 1 : 3)
    .u16(s.hashAlg)
    .tpm2b(s.nonceTPM)
    .tpm2b(s.nonceCaller)
    .tpm2b(s.digest)
    .u32(s.pcrCounter === undefined ? 0xffffffff : s.pcrCounter)
    .u64(BigInt(s.expiresAt ?? -1) & 0xffffffffffffffffn)
    .tpm2b(s.cpHash ?? Buffer.alloc(0))
    .finish();
}

function loadSession(r: Reader): Session {
  const handle = r.u32();
  const type = r.u8() === 1 ? 'policy' : 'trial';
  const hashAlg = r.u16();
  const nonceTPM = r.tpm2b();
  const nonceCaller = r.tpm2b();
  const digest = r.tpm2b();
  const pcr = r.u32();
  const exp = BigInt.asIntN(64, r.u64());
  const cp = r.tpm2b();
  return {
    handle,
    type,
    hashAlg,
    nonceTPM,
    nonceCaller,
    digest,
    pcrCounter: pcr === 0xffffffff ? undefined : pcr,
    expiresAt: exp < 0n ? undefined : Number(exp),
    cpHash: cp.length === 0 ? undefined : cp,
  };
}

export const contextCommands: readonly CommandSpec[] = [
  {
    cc: TPM_CC.FlushContext,
    name: 'FlushContext',
    handles: [],
    auth: [],
    run(ctx) {
      const h = ctx.at(1).u32();
      ctx.end();
      const tpm = ctx.tpm;
      const type = h >>> 24;
      if (type === TPM_HT.TRANSIENT && tpm.flushObject(h)) return;
      if ((type === TPM_HT.POLICY_SESSION || type === TPM_HT.HMAC_SESSION) && tpm.sessions.delete(h)) return;
      if ((type === TPM_HT.POLICY_SESSION || type === TPM_HT.HMAC_SESSION) && tpm.savedSessions.delete(h))
        return;
      throw rcParam(RC.HANDLE, 1);
    },
  },
  {
    cc: TPM_CC.EvictControl,
    name: 'EvictControl',
    handles: ['provision', 'object'],
    auth: ['user'],
    run(ctx) {
      const ph = ctx.at(1).u32();
      ctx.end();
      const tpm = ctx.tpm;
      const [auth, objHandle] = ctx.handles as [number, number];
      const [lo, hi] = auth === TPM_RH.OWNER ? OWNER_RANGE : PLATFORM_RANGE;
      if (ph < lo || ph > hi) throw rcParam(RC.RANGE, 1);
      const obj = tpm.object(objHandle) as SimObject;
      if (objHandle >>> 24 === TPM_HT.PERSISTENT) {
        if (objHandle !== ph) throw rcParam(RC.HANDLE, 1);
        tpm.state.persistent.delete(ph);
        tpm.save();
        return;
      }
      if (obj.hierarchy === TPM_RH.NULL) throw rcHandle(RC.HIERARCHY, 2);
      if (auth === TPM_RH.OWNER && obj.hierarchy === TPM_RH.PLATFORM) throw rcHandle(RC.HIERARCHY, 2);
      if (has(obj.pub.attributes, TPMA_OBJECT.stClear)) throw rcHandle(RC.ATTRIBUTES, 2);
      if (tpm.state.persistent.has(ph)) throw rc(RC.NV_DEFINED);
      if (tpm.state.persistent.size >= MAX_PERSISTENT) throw rc(RC.NV_SPACE);
      tpm.state.persistent.set(ph, obj);
      tpm.save();
    },
  },
  {
    cc: TPM_CC.ContextSave,
    name: 'ContextSave',
    handles: ['any'],
    auth: [],
    run(ctx) {
      ctx.end();
      const tpm = ctx.tpm;
      const h = ctx.handles[0] as number;
      const type = h >>> 24;
      let plain: Buffer;
      let savedHandle: number;
      let hierarchy: number;
      const session = tpm.sessions.get(h);
      if (type === TPM_HT.TRANSIENT && tpm.object(h) !== undefined) {
        const o = tpm.object(h) as SimObject;
        plain = saveObject(o);
        savedHandle = has(o.pub.attributes, TPMA_OBJECT.stClear) ? 0x80000002 : 0x80000000;
        hierarchy = o.hierarchy;
      } else if (session !== undefined) {
        plain = saveSession(session);
        savedHandle = h;
        hierarchy = TPM_RH.NULL;
        tpm.sessions.delete(h);
        tpm.savedSessions.add(h);
      } else {
        throw rcHandle(RC.HANDLE, 1);
      }
      tpm.contextSequence += 1n;
      const seq = tpm.contextSequence;
      const blob = wrap(contextKey(tpm), binding(seq, savedHandle, hierarchy), plain);
      ctx.out.u64(seq).u32(savedHandle).u32(hierarchy).tpm2b(blob);
    },
  },
  {
    cc: TPM_CC.ContextLoad,
    name: 'ContextLoad',
    handles: [],
    auth: [],
    responseHandle: true,
    run(ctx) {
      const r = ctx.at(1);
      const seq = r.u64();
      const savedHandle = r.u32();
      const hierarchy = r.u32();
      const blob = r.tpm2b('contextBlob', 4096);
      ctx.end();
      const tpm = ctx.tpm;
      const plain = unwrap(contextKey(tpm), binding(seq, savedHandle, hierarchy), blob);
      if (plain === undefined) throw rcParam(RC.INTEGRITY, 1);
      const pr = new Reader(plain, 'context');
      const kind = pr.u8();
      if (kind === 1) {
        const obj = loadObject(pr);
        ctx.setHandle(tpm.load(obj));
        return;
      }
      const s = loadSession(pr);
      if (!tpm.savedSessions.has(s.handle)) throw rcParam(RC.HANDLE, 1);
      if (tpm.sessions.size >= MAX_SESSIONS) throw rc(RC.SESSION_MEMORY);
      tpm.savedSessions.delete(s.handle);
      tpm.sessions.set(s.handle, s);
      ctx.setHandle(s.handle);
    },
  },
];
