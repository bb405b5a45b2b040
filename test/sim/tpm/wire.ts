/**
 * Test helper: marshal raw TPM 2.0 commands with the shared wire codec and split responses,
 * so the simulator (and swtpm, in the differential test) are driven by bytes, not by a client.
 */
import { Reader, Writer } from '../../../attestors/tpm/wire/buffer.ts';
import { TPM_ALG, TPM_CC, TPM_RH, TPM_ST } from '../../../attestors/tpm/wire/constants.ts';
import { type PcrSelection, writePcrSelection } from '../../../attestors/tpm/wire/pcr-selection.ts';
import { marshalPublic, type TpmtPublic } from '../../../attestors/tpm/wire/public.ts';

export interface Auth {
  readonly handle: number;
  readonly nonce?: Uint8Array;
  readonly attributes?: number;
  readonly hmac?: Uint8Array;
}

export const PW: Auth = { handle: TPM_RH.PW, attributes: 1 };
export const pw = (password: Uint8Array): Auth => ({ handle: TPM_RH.PW, attributes: 1, hmac: password });
export const policy = (handle: number, continueSession = true): Auth => ({
  handle,
  attributes: continueSession ? 1 : 0,
});

export function command(
  cc: number,
  handles: readonly number[] = [],
  auths: readonly Auth[] | undefined = undefined,
  params: (w: Writer) => void = () => {},
): Buffer {
  const w = new Writer()
    .u16(auths === undefined ? TPM_ST.NO_SESSIONS : TPM_ST.SESSIONS)
    .u32(0)
    .u32(cc);
  for (const h of handles) w.u32(h);
  if (auths !== undefined) {
    const a = new Writer();
    for (const s of auths)
      a.u32(s.handle)
        .tpm2b(s.nonce ?? new Uint8Array())
        .u8(s.attributes ?? 0)
        .tpm2b(s.hmac ?? new Uint8Array());
    const area = a.finish();
    w.u32(area.length).bytes(area);
  }
  params(w);
  const b = w.finish();
  b.writeUInt32BE(b.length, 2);
  return b;
}

export interface Response {
  readonly tag: number;
  readonly rc: number;
  readonly bytes: Buffer;
  /** Reader over the response after the header (handle, parameterSize, parameters, auths). */
  readonly body: Reader;
}

export function response(raw: Uint8Array): Response {
  const bytes = Buffer.from(raw);
  const r = new Reader(bytes, 'response');
  const tag = r.u16();
  const size = r.u32();
  const rc = r.u32();
  if (size !== bytes.length) throw new Error(`response size ${size} != ${bytes.length}`);
  return { tag, rc, bytes, body: r };
}

/** Skip the parameterSize of a sessions response. */
export function params(resp: Response, hasHandle = false): { handle: number | undefined; r: Reader } {
  const r = resp.body;
  const handle = hasHandle ? r.u32() : undefined;
  if (resp.tag === TPM_ST.SESSIONS) r.u32();
  return { handle, r };
}

export const sensitiveCreate = (
  w: Writer,
  userAuth: Uint8Array = Buffer.alloc(0),
  data: Uint8Array = Buffer.alloc(0),
): Writer => w.sized((s) => s.tpm2b(userAuth).tpm2b(data));

export function createPrimary(hierarchy: number, tpl: TpmtPublic, auth: Auth = PW): Buffer {
  return command(TPM_CC.CreatePrimary, [hierarchy], [auth], (w) => {
    sensitiveCreate(w);
    w.tpm2b(marshalPublic(tpl)).tpm2b(Buffer.alloc(0)).u32(0);
  });
}

export function create(
  parent: number,
  tpl: TpmtPublic,
  data: Uint8Array = Buffer.alloc(0),
  auth: Auth = PW,
  userAuth: Uint8Array = Buffer.alloc(0),
): Buffer {
  return command(TPM_CC.Create, [parent], [auth], (w) => {
    sensitiveCreate(w, userAuth, data);
    w.tpm2b(marshalPublic(tpl)).tpm2b(Buffer.alloc(0)).u32(0);
  });
}

export function load(parent: number, priv: Uint8Array, pub: Uint8Array, auth: Auth = PW): Buffer {
  return command(TPM_CC.Load, [parent], [auth], (w) => w.tpm2b(priv).tpm2b(pub));
}

/** TPM2_Sign over `digest` with `scheme` (NULL = the key's) and a NULL hash-check ticket. */
export function sign(
  key: number,
  digest: Uint8Array,
  scheme: { alg: number; hash?: number } = { alg: TPM_ALG.NULL },
  auth: Auth = PW,
): Buffer {
  return command(TPM_CC.Sign, [key], [auth], (w) => {
    w.tpm2b(digest).u16(scheme.alg);
    if (scheme.alg !== TPM_ALG.NULL) w.u16(scheme.hash ?? TPM_ALG.SHA256);
    w.u16(TPM_ST.HASHCHECK).u32(TPM_RH.NULL).tpm2b(new Uint8Array());
  });
}

export const flush = (h: number): Buffer => command(TPM_CC.FlushContext, [], undefined, (w) => w.u32(h));

export function startPolicy(
  nonce = Buffer.alloc(16, 7),
  trial = false,
  hash: number = TPM_ALG.SHA256,
): Buffer {
  return command(TPM_CC.StartAuthSession, [TPM_RH.NULL, TPM_RH.NULL], undefined, (w) =>
    w
      .tpm2b(nonce)
      .tpm2b(Buffer.alloc(0))
      .u8(trial ? 3 : 1)
      .u16(TPM_ALG.NULL)
      .u16(hash),
  );
}

export function policySecret(authHandle: number, session: number, auth: Auth = PW): Buffer {
  return command(TPM_CC.PolicySecret, [authHandle, session], [auth], (w) => w.u16(0).u16(0).u16(0).u32(0));
}

export function policyPcr(session: number, sel: PcrSelection, pcrDigest = Buffer.alloc(0)): Buffer {
  return command(TPM_CC.PolicyPCR, [session], undefined, (w) => {
    w.tpm2b(pcrDigest);
    writePcrSelection(w, sel);
  });
}

export const policyGetDigest = (session: number): Buffer => command(TPM_CC.PolicyGetDigest, [session]);

export function pcrRead(sel: PcrSelection): Buffer {
  return command(TPM_CC.PCR_Read, [], undefined, (w) => writePcrSelection(w, sel));
}

export function pcrExtend(pcr: number, alg: number, d: Buffer): Buffer {
  return command(TPM_CC.PCR_Extend, [pcr], [PW], (w) => w.u32(1).u16(alg).bytes(d));
}

export function quote(key: number, nonce: Buffer, sel: PcrSelection, auth: Auth = PW): Buffer {
  return command(TPM_CC.Quote, [key], [auth], (w) => {
    w.tpm2b(nonce).u16(TPM_ALG.NULL);
    writePcrSelection(w, sel);
  });
}

export function getCapability(cap: number, prop: number, count: number): Buffer {
  return command(TPM_CC.GetCapability, [], undefined, (w) => w.u32(cap).u32(prop).u32(count));
}

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
