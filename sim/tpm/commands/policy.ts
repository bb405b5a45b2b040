/**
 * Sessions and policies (Part 3 §11.1 StartAuthSession; §23.4 PolicySecret, §23.7 PolicyPCR,
 * §23.19 PolicyGetDigest, §23.6 PolicyRestart). Only unsalted, unbound policy and trial sessions
 * without parameter encryption exist in the simulator (what edgeward's client uses); digests are
 * extended with the same software functions the client and verifier use.
 */
import { digest } from '../../../attestors/tpm/crypto/kdf.ts';
import { handleName } from '../../../attestors/tpm/crypto/name.ts';
import { policyPcrUpdate, policySecretUpdate } from '../../../attestors/tpm/crypto/policy.ts';
import {
  HASHES,
  TPM_ALG,
  TPM_CC,
  TPM_HT,
  TPM_RH,
  TPM_SE,
  TPM_ST,
} from '../../../attestors/tpm/wire/constants.ts';
import { RC, rcParam } from '../rc.ts';
import { readSelection } from '../selection.ts';
import { resetPolicy, type Session } from '../session.ts';
import type { CommandSpec } from '../spec.ts';
import type { NvIndex } from '../state.ts';
import type { Tpm } from '../tpm.ts';
import { nvName } from './nv.ts';
import { selectedValues } from './pcr.ts';

/** The Name of any authorizable entity: object Name, NV Name, or the handle itself. */
export function entityName(tpm: Tpm, h: number): Buffer {
  const type = h >>> 24;
  if (type === TPM_HT.TRANSIENT || type === TPM_HT.PERSISTENT) return tpm.object(h)?.name ?? handleName(h);
  if (type === TPM_HT.NV_INDEX) return nvName(tpm.state.nv.get(h) as NvIndex);
  return handleName(h);
}

const session = (tpm: Tpm, h: number): Session => tpm.sessions.get(h) as Session;

export const policyCommands: readonly CommandSpec[] = [
  {
    cc: TPM_CC.StartAuthSession,
    name: 'StartAuthSession',
    handles: ['null', 'null'],
    auth: [],
    responseHandle: true,
    run(ctx) {
      const nonceCaller = ctx.at(1).tpm2b('nonceCaller', 64);
      const salt = ctx.at(2).tpm2b('encryptedSalt', 512);
      const type = ctx.at(3).u8();
      const r = ctx.at(4);
      const symAlg = r.u16();
      if (symAlg !== TPM_ALG.NULL) r.bytes(4);
      const authHash = ctx.at(5).u16();
      ctx.end();
      if (salt.length !== 0) throw rcParam(RC.VALUE, 2);
      if (type !== TPM_SE.POLICY && type !== TPM_SE.TRIAL) throw rcParam(RC.VALUE, 3);
      if (symAlg !== TPM_ALG.NULL) throw rcParam(RC.SYMMETRIC, 4);
      const h = HASHES[authHash];
      if (h === undefined) throw rcParam(RC.HASH, 5);
      if (nonceCaller.length < 16 || nonceCaller.length > h.size) throw rcParam(RC.SIZE, 1);
      const tpm = ctx.tpm;
      const handle = tpm.sessionHandle(TPM_HT.POLICY_SESSION);
      const s: Session = {
        handle,
        type: type === TPM_SE.POLICY ? 'policy' : 'trial',
        hashAlg: authHash,
        nonceTPM: tpm.config.random.bytes(nonceCaller.length),
        nonceCaller,
        digest: Buffer.alloc(h.size),
        pcrCounter: undefined,
        expiresAt: undefined,
        cpHash: undefined,
      };
      tpm.sessions.set(handle, s);
      ctx.setHandle(handle);
      ctx.out.tpm2b(s.nonceTPM);
    },
  },
  {
    cc: TPM_CC.PolicySecret,
    name: 'PolicySecret',
    handles: ['entity', 'policy'],
    auth: ['user'],
    run(ctx) {
      const nonceTPM = ctx.at(1).tpm2b('nonceTPM', 64);
      const cpHashA = ctx.at(2).tpm2b('cpHashA', 64);
      const policyRef = ctx.at(3).tpm2b('policyRef', 64);
      const expiration = ctx.at(4).i32();
      ctx.end();
      const tpm = ctx.tpm;
      const [authHandle, sh] = ctx.handles as [number, number];
      const s = session(tpm, sh);
      const size = s.digest.length;
      if (nonceTPM.length !== 0 && !nonceTPM.equals(s.nonceTPM)) throw rcParam(RC.NONCE, 1);
      if (cpHashA.length !== 0 && cpHashA.length !== size) throw rcParam(RC.SIZE, 2);
      if (policyRef.length > size) throw rcParam(RC.SIZE, 3);
      if (cpHashA.length !== 0) {
        if (s.cpHash !== undefined && !s.cpHash.equals(cpHashA)) throw rcParam(RC.CPHASH, 2);
        s.cpHash = cpHashA;
      }
      if (expiration !== 0 && s.type === 'policy') {
        const at = tpm.clockMs() + Math.abs(expiration) * 1000;
        s.expiresAt = s.expiresAt === undefined ? at : Math.min(s.expiresAt, at);
      }
      s.digest = policySecretUpdate(s.hashAlg, s.digest, entityName(tpm, authHandle), policyRef);
      // timeout (empty) and a NULL TPMT_TK_AUTH ticket.
      ctx.out.u16(0).u16(TPM_ST.AUTH_SECRET).u32(TPM_RH.NULL).u16(0);
    },
  },
  {
    cc: TPM_CC.PolicyPCR,
    name: 'PolicyPCR',
    handles: ['policy'],
    auth: [],
    run(ctx) {
      const given = ctx.at(1).tpm2b('pcrDigest', 64);
      const sel = readSelection(ctx.at(2), 2);
      ctx.end();
      const tpm = ctx.tpm;
      const s = session(tpm, ctx.handles[0] as number);
      const current = digest(s.hashAlg, ...selectedValues(tpm, sel).values);
      let pcrDigest = current;
      if (s.type === 'trial') {
        if (given.length !== 0) pcrDigest = given;
      } else {
        if (given.length !== 0 && !given.equals(current)) throw rcParam(RC.VALUE, 1);
        s.pcrCounter = tpm.pcrUpdateCounter;
      }
      s.digest = policyPcrUpdate(s.hashAlg, s.digest, sel, pcrDigest);
    },
  },
  {
    cc: TPM_CC.PolicyGetDigest,
    name: 'PolicyGetDigest',
    handles: ['policy'],
    auth: [],
    run(ctx) {
      ctx.end();
      ctx.out.tpm2b(session(ctx.tpm, ctx.handles[0] as number).digest);
    },
  },
  {
    cc: TPM_CC.PolicyRestart,
    name: 'PolicyRestart',
    handles: ['policy'],
    auth: [],
    run(ctx) {
      ctx.end();
      resetPolicy(session(ctx.tpm, ctx.handles[0] as number));
    },
  },
];
