/**
 * The authorization area (Part 1 "Authorizations"; brief §1.2, §1.5): parse TPMS_AUTH_COMMAND
 * entries, check each against the handle it authorizes in handle order (password or policy
 * session, USER/ADMIN role rules, dictionary-attack protection), and build the response auth
 * area after success. Response codes match swtpm 0.7.1 where observed.
 */

import type { Reader, Writer } from '../../attestors/tpm/wire/buffer.ts';
import { TPM_HT, TPM_RH, TPMA_NV, TPMA_OBJECT, TPMA_SESSION } from '../../attestors/tpm/wire/constants.ts';
import { has } from './object.ts';
import { RC, REFERENCE_S0, rc, rcSession } from './rc.ts';
import { resetPolicy, type Session } from './session.ts';
import type { AuthRole } from './spec.ts';
import type { Tpm } from './tpm.ts';

export interface AuthCommand {
  readonly handle: number;
  readonly nonce: Buffer;
  readonly attributes: number;
  readonly hmac: Buffer;
}

interface EntityAuth {
  readonly authValue: Buffer;
  readonly authPolicy: Buffer;
  readonly userWithAuth: boolean;
  readonly adminWithPolicy: boolean;
  readonly da: boolean;
}

const OPEN: EntityAuth = {
  authValue: Buffer.alloc(0),
  authPolicy: Buffer.alloc(0),
  userWithAuth: true,
  adminWithPolicy: false,
  da: false,
};

/** Parse the authorization area: `authorizationSize` then entries until it is consumed. */
export function readAuthArea(r: Reader): AuthCommand[] {
  const size = r.u32('authorizationSize');
  if (size < 9 || size > r.remaining) throw rc(RC.SIZE);
  const end = r.offset + size;
  const out: AuthCommand[] = [];
  while (r.offset < end) {
    if (out.length === 3) throw rc(RC.AUTHSIZE);
    out.push({
      handle: r.u32('sessionHandle'),
      nonce: r.tpm2b('nonceCaller', 64),
      attributes: r.u8('sessionAttributes'),
      hmac: r.tpm2b('hmac', 64),
    });
  }
  if (r.offset !== end) throw rc(RC.AUTHSIZE);
  return out;
}

function entityAuth(tpm: Tpm, handle: number): EntityAuth {
  const type = handle >>> 24;
  if (type === TPM_HT.TRANSIENT || type === TPM_HT.PERSISTENT) {
    const o = tpm.object(handle);
    if (o === undefined) return OPEN;
    const a = o.pub.attributes;
    return {
      authValue: o.authValue,
      authPolicy: Buffer.from(o.pub.authPolicy),
      userWithAuth: has(a, TPMA_OBJECT.userWithAuth),
      adminWithPolicy: has(a, TPMA_OBJECT.adminWithPolicy),
      da: !has(a, TPMA_OBJECT.noDA),
    };
  }
  if (type === TPM_HT.NV_INDEX) {
    const nv = tpm.state.nv.get(handle);
    if (nv === undefined) return OPEN;
    return {
      ...OPEN,
      authValue: nv.authValue,
      authPolicy: nv.authPolicy,
      da: !has(nv.attributes, TPMA_NV.NO_DA),
    };
  }
  if (handle === TPM_RH.LOCKOUT) return { ...OPEN, da: true };
  return OPEN;
}

/** authValues compare with trailing zero bytes removed (Part 1 "authValue"). */
function trim(b: Buffer): Buffer {
  let n = b.length;
  while (n > 0 && b[n - 1] === 0) n--;
  return b.subarray(0, n);
}

function checkPassword(tpm: Tpm, e: EntityAuth, a: AuthCommand, role: AuthRole, i: number): void {
  if (role === 'user' && !e.userWithAuth) throw rc(RC.AUTH_UNAVAILABLE);
  if (role === 'admin' && e.adminWithPolicy) throw rc(RC.AUTH_TYPE);
  if (a.nonce.length !== 0) throw rcSession(RC.SIZE, i);
  if (e.da) {
    if (tpm.lockedOut) throw rc(RC.LOCKOUT);
    if (tpm.config.retryQuirk && !tpm.daUsed) {
      tpm.daUsed = true;
      throw rc(RC.RETRY);
    }
  }
  if (trim(a.hmac).equals(trim(e.authValue))) return;
  if (!e.da) throw rcSession(RC.BAD_AUTH, i);
  tpm.state.daFailedTries += 1;
  if (tpm.state.daFailedTries >= tpm.config.maxTries) tpm.lockedOut = true;
  tpm.save();
  throw rcSession(RC.AUTH_FAIL, i);
}

function checkPolicy(tpm: Tpm, s: Session, e: EntityAuth, a: AuthCommand, i: number): void {
  if (s.type === 'trial') throw rcSession(RC.ATTRIBUTES, i);
  if (a.hmac.length !== 0) throw rcSession(RC.AUTH_FAIL, i);
  if (s.expiresAt !== undefined && tpm.clockMs() > s.expiresAt) throw rcSession(RC.EXPIRED, i);
  if (s.pcrCounter !== undefined && s.pcrCounter !== tpm.pcrUpdateCounter) throw rc(RC.PCR_CHANGED);
  if (e.authPolicy.length === 0 || !s.digest.equals(e.authPolicy)) throw rcSession(RC.POLICY_FAIL, i);
}

/**
 * Check the sessions against the authorized handles (roles in `roles`, handle order) and
 * reject sessions the simulator does not support as extra (audit/encrypt) sessions.
 */
export function authorize(
  tpm: Tpm,
  handles: readonly number[],
  roles: readonly AuthRole[],
  auths: readonly AuthCommand[],
): void {
  if (auths.length < roles.length) throw rc(RC.AUTH_MISSING);
  auths.forEach((a, idx) => {
    const i = idx + 1;
    const role = roles[idx];
    const isPw = a.handle === TPM_RH.PW;
    const session = tpm.sessions.get(a.handle);
    if (!isPw && session === undefined) {
      const t = a.handle >>> 24;
      if (t === TPM_HT.POLICY_SESSION || t === TPM_HT.HMAC_SESSION) throw rc(REFERENCE_S0 + idx);
      throw rcSession(RC.HANDLE, i);
    }
    if (role === undefined) {
      // An extra session must be an audit or parameter-encryption session; none is supported.
      throw rcSession(isPw ? RC.HANDLE : RC.ATTRIBUTES, i);
    }
    const entity = entityAuth(tpm, handles[idx] as number);
    if (isPw) checkPassword(tpm, entity, a, role, i);
    else checkPolicy(tpm, session as Session, entity, a, i);
  });
}

/** After success: reset used policy digests, flush sessions without continueSession, write the area. */
export function finishAuth(tpm: Tpm, auths: readonly AuthCommand[], w: Writer): void {
  for (const a of auths) {
    const s = tpm.sessions.get(a.handle);
    if (s === undefined) {
      w.u16(0)
        .u8(a.attributes & TPMA_SESSION.continueSession)
        .u16(0);
      continue;
    }
    resetPolicy(s);
    s.nonceTPM = tpm.config.random.bytes(s.nonceTPM.length);
    w.tpm2b(s.nonceTPM).u8(a.attributes).u16(0);
    if ((a.attributes & TPMA_SESSION.continueSession) === 0) tpm.sessions.delete(a.handle);
  }
}
