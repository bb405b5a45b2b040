/**
 * The simulator's command path (Part 1 "Command Processing"; brief §1.2–1.4): header checks
 * (tag, size, command code, Startup), the handle area (each handle checked against the kind the
 * command expects), the authorization area, the handler, then the response with its auth area.
 * Every failure — including a bug in a handler — becomes a 10-byte error response with tag
 * 0x8001; nothing is thrown out of `execute`.
 */
import { AttestorError } from '../../attestors/errors.ts';
import { Reader, Writer } from '../../attestors/tpm/wire/buffer.ts';
import { TPM_CC, TPM_HT, TPM_RH, TPM_ST } from '../../attestors/tpm/wire/constants.ts';
import { type AuthCommand, authorize, finishAuth, readAuthArea } from './auth.ts';
import { RC, rc, rcHandle, rcParam, TpmRc } from './rc.ts';
import type { CommandContext, CommandSpec, HandleKind } from './spec.ts';
import { MAX_OBJECTS, PCR_COUNT, type Tpm } from './tpm.ts';

export const MAX_COMMAND_SIZE = 4096;
const HIERARCHIES = new Set<number>([TPM_RH.OWNER, TPM_RH.ENDORSEMENT, TPM_RH.PLATFORM, TPM_RH.NULL]);

export function errorResponse(code: number): Buffer {
  return new Writer().u16(TPM_ST.NO_SESSIONS).u32(10).u32(code).finish();
}

function checkObject(tpm: Tpm, h: number, i: number): void {
  const type = h >>> 24;
  if (type === TPM_HT.TRANSIENT) {
    const slot = h - 0x80000000;
    if (slot >= MAX_OBJECTS) throw rcHandle(RC.VALUE, i);
    if (tpm.object(h) === undefined) throw rc(RC.REFERENCE_H0 + i - 1);
    return;
  }
  if (type === TPM_HT.PERSISTENT) {
    if (tpm.object(h) === undefined) throw rcHandle(RC.HANDLE, i);
    return;
  }
  throw rcHandle(RC.VALUE, i);
}

function checkNv(tpm: Tpm, h: number, i: number): void {
  if (h >>> 24 !== TPM_HT.NV_INDEX) throw rcHandle(RC.VALUE, i);
  if (!tpm.state.nv.has(h)) throw rcHandle(RC.HANDLE, i);
}

function checkHandle(tpm: Tpm, kind: HandleKind, h: number, i: number): void {
  const type = h >>> 24;
  switch (kind) {
    case 'hierarchy':
      if (!HIERARCHIES.has(h)) throw rcHandle(RC.VALUE, i);
      return;
    case 'provision':
      if (h !== TPM_RH.OWNER && h !== TPM_RH.PLATFORM) throw rcHandle(RC.VALUE, i);
      return;
    case 'object':
      checkObject(tpm, h, i);
      return;
    case 'objectOrNull':
      if (h !== TPM_RH.NULL) checkObject(tpm, h, i);
      return;
    case 'pcr':
      if (h >= PCR_COUNT) throw rcHandle(RC.VALUE, i);
      return;
    case 'nv':
      checkNv(tpm, h, i);
      return;
    case 'nvAuth':
      if (h !== TPM_RH.OWNER && h !== TPM_RH.PLATFORM) checkNv(tpm, h, i);
      return;
    case 'entity':
      if (HIERARCHIES.has(h) || h === TPM_RH.LOCKOUT || h < PCR_COUNT) return;
      if (type === TPM_HT.NV_INDEX) {
        checkNv(tpm, h, i);
        return;
      }
      checkObject(tpm, h, i);
      return;
    case 'policy':
      if (type !== TPM_HT.POLICY_SESSION) throw rcHandle(RC.VALUE, i);
      if (!tpm.sessions.has(h)) throw rc(RC.REFERENCE_H0 + i - 1);
      return;
    case 'null':
      if (h !== TPM_RH.NULL) throw rcHandle(RC.VALUE, i);
      return;
    case 'any':
      return;
  }
}

function run(tpm: Tpm, registry: ReadonlyMap<number, CommandSpec>, cmd: Uint8Array): Buffer {
  if (cmd.length < 10) throw rc(RC.COMMAND_SIZE);
  const r = new Reader(cmd, 'command');
  const tag = r.u16();
  const size = r.u32();
  const cc = r.u32();
  if (tag !== TPM_ST.NO_SESSIONS && tag !== TPM_ST.SESSIONS) throw rc(RC.BAD_TAG);
  if (size !== cmd.length || size > MAX_COMMAND_SIZE) throw rc(RC.COMMAND_SIZE);
  const spec = registry.get(cc);
  if (spec === undefined) throw rc(RC.COMMAND_CODE);
  if (!tpm.started && cc !== TPM_CC.Startup) throw rc(RC.INITIALIZE);

  const handles: number[] = [];
  for (let i = 0; i < spec.handles.length; i++) {
    if (r.remaining < 4) throw rc(RC.INSUFFICIENT);
    handles.push(r.u32());
  }
  spec.handles.forEach((kind, i) => {
    checkHandle(tpm, kind, handles[i] as number, i + 1);
  });

  let auths: AuthCommand[] = [];
  if (tag === TPM_ST.SESSIONS) {
    if (r.remaining < 4) throw rc(RC.INSUFFICIENT);
    auths = readAuthArea(r);
  } else if (spec.auth.length > 0) {
    throw rc(RC.AUTH_MISSING);
  }
  authorize(tpm, handles, spec.auth, auths);

  let param = 1;
  let respHandle: number | undefined;
  const out = new Writer();
  const ctx: CommandContext = {
    tpm,
    handles,
    at(n) {
      param = n;
      return r;
    },
    end() {
      if (r.remaining !== 0) throw rc(RC.SIZE);
    },
    out,
    setHandle(h) {
      respHandle = h;
    },
  };
  try {
    spec.run(ctx);
  } catch (err) {
    if (err instanceof AttestorError && err.code === 'ERR_TPM_MALFORMED') {
      throw rcParam(/exceeds/.test(err.message) ? RC.SIZE : RC.INSUFFICIENT, param);
    }
    throw err;
  }

  const params = out.finish();
  const w = new Writer().u16(tag).u32(0).u32(0);
  if (spec.responseHandle === true) w.u32(respHandle ?? 0);
  if (tag === TPM_ST.SESSIONS) {
    w.u32(params.length).bytes(params);
    finishAuth(tpm, auths, w);
  } else {
    w.bytes(params);
  }
  const resp = w.finish();
  resp.writeUInt32BE(resp.length, 2);
  return resp;
}

/** Execute one command; always returns a complete response. */
export function execute(
  tpm: Tpm,
  registry: ReadonlyMap<number, CommandSpec>,
  cmd: Uint8Array,
  onInternalError: (err: unknown) => void,
): Buffer {
  try {
    return run(tpm, registry, cmd);
  } catch (err) {
    if (err instanceof TpmRc) return errorResponse(err.rc);
    if (err instanceof AttestorError && err.code === 'ERR_TPM_MALFORMED')
      return errorResponse(RC.INSUFFICIENT);
    onInternalError(err);
    return errorResponse(RC.FAILURE);
  }
}
