/**
 * Signing commands (Part 3 §18.4 Quote, §18.2 Certify, §20.2 Sign). Quote and Certify build
 * TPMS_ATTEST with clock info, reset/restart counters and firmware version — obfuscated, as a
 * real TPM does, when the signer is not in the endorsement or platform hierarchy — and sign its
 * hash with the key's scheme. Sign with a restricted key needs a TPM-made hash ticket, so a NULL
 * ticket gets TPM_RC_TICKET: restricted keys can never sign forged TPMS_ATTEST bytes.
 */
import { constants as cc, createHmac, privateEncrypt, sign } from 'node:crypto';
import { digest, kdfa } from '../../../attestors/tpm/crypto/kdf.ts';
import { handleName } from '../../../attestors/tpm/crypto/name.ts';
import { type Attested, marshalAttest } from '../../../attestors/tpm/wire/attest.ts';
import type { Reader, Writer } from '../../../attestors/tpm/wire/buffer.ts';
import {
  HASHES,
  TPM_ALG,
  TPM_CC,
  TPM_GENERATED_VALUE,
  TPM_RH,
  TPM_ST,
  TPMA_OBJECT,
} from '../../../attestors/tpm/wire/constants.ts';
import { curveInfo, ecdsaSignDigest } from '../keys.ts';
import { has, privateKeyOf, type SimObject } from '../object.ts';
import { RC, rcHandle, rcParam } from '../rc.ts';
import { readSelection } from '../selection.ts';
import type { CommandSpec } from '../spec.ts';
import { FIRMWARE_VERSION, type Tpm } from '../tpm.ts';
import { selectedValues } from './pcr.ts';

interface SigScheme {
  readonly scheme: number;
  readonly hash: number;
}

function readScheme(r: Reader): SigScheme {
  const scheme = r.u16();
  return { scheme, hash: scheme === TPM_ALG.NULL ? TPM_ALG.NULL : r.u16() };
}

/** The signing key and the scheme to use (the key's, or inScheme when the key's is NULL). */
function signer(
  tpm: Tpm,
  h: number,
  n: number,
  inScheme: SigScheme,
  p: number,
): { key: SimObject; scheme: SigScheme } {
  const key = tpm.object(h) as SimObject;
  if (!has(key.pub.attributes, TPMA_OBJECT.sign) || key.pub.type === TPM_ALG.KEYEDHASH)
    throw rcHandle(RC.KEY, n);
  const own = key.pub.params.scheme;
  let scheme: SigScheme;
  if (own.scheme !== TPM_ALG.NULL) {
    if (inScheme.scheme !== TPM_ALG.NULL && (inScheme.scheme !== own.scheme || inScheme.hash !== own.hash))
      throw rcParam(RC.SCHEME, p);
    scheme = { scheme: own.scheme, hash: own.hash ?? TPM_ALG.NULL };
  } else {
    scheme = inScheme;
  }
  const fits =
    key.pub.type === TPM_ALG.ECC ? scheme.scheme === TPM_ALG.ECDSA : scheme.scheme === TPM_ALG.RSASSA;
  if (!fits || HASHES[scheme.hash] === undefined) throw rcParam(RC.SCHEME, p);
  return { key, scheme };
}

function writeSig(w: Writer, scheme: SigScheme, sig: Buffer): void {
  w.u16(scheme.scheme).u16(scheme.hash);
  if (scheme.scheme === TPM_ALG.ECDSA) {
    const half = sig.length / 2;
    w.tpm2b(sig.subarray(0, half)).tpm2b(sig.subarray(half));
  } else {
    w.tpm2b(sig);
  }
}

/** Sign `data` (hashed here with the scheme's hash), as Quote and Certify do. */
function signMessage(key: SimObject, scheme: SigScheme, data: Buffer): Buffer {
  const h = (HASHES[scheme.hash] as { node: string }).node;
  if (scheme.scheme === TPM_ALG.ECDSA)
    return sign(h, data, { key: privateKeyOf(key), dsaEncoding: 'ieee-p1363' });
  return sign(h, data, privateKeyOf(key));
}

/** Fill and sign a TPMS_ATTEST; `key` undefined = TPM_RH_NULL signer (unsigned). */
function attest(
  tpm: Tpm,
  key: SimObject | undefined,
  scheme: SigScheme | undefined,
  extraData: Buffer,
  attested: Attested,
  w: Writer,
): void {
  const info = tpm.clockInfo();
  let { resetCount, restartCount } = info;
  let firmwareVersion = FIRMWARE_VERSION;
  if (key !== undefined && key.hierarchy !== TPM_RH.ENDORSEMENT && key.hierarchy !== TPM_RH.PLATFORM) {
    const ob = kdfa(TPM_ALG.SHA256, tpm.proof(TPM_RH.OWNER), 'OBFUSCATE', key.name, Buffer.alloc(0), 128);
    resetCount = (resetCount + ob.readUInt32BE(0)) >>> 0;
    restartCount = (restartCount + ob.readUInt32BE(4)) >>> 0;
    firmwareVersion = (firmwareVersion + ob.readBigUInt64BE(8)) & 0xffffffffffffffffn;
  }
  const bytes = marshalAttest({
    magic: TPM_GENERATED_VALUE,
    qualifiedSigner: key?.qualifiedName ?? handleName(TPM_RH.NULL),
    extraData,
    clockInfo: { clock: info.clock, resetCount, restartCount, safe: info.safe },
    firmwareVersion,
    attested,
  });
  w.tpm2b(bytes);
  if (key === undefined || scheme === undefined) w.u16(TPM_ALG.NULL);
  else writeSig(w, scheme, signMessage(key, scheme, bytes));
}

const DIGEST_INFO: Readonly<Record<number, string>> = {
  [TPM_ALG.SHA1]: '3021300906052b0e03021a05000414',
  [TPM_ALG.SHA256]: '3031300d060960864801650304020105000420',
  [TPM_ALG.SHA384]: '3041300d060960864801650304020205000430',
  [TPM_ALG.SHA512]: '3051300d060960864801650304020305000440',
};

export const attestCommands: readonly CommandSpec[] = [
  {
    cc: TPM_CC.Quote,
    name: 'Quote',
    handles: ['object'],
    auth: ['user'],
    run(ctx) {
      const qualifyingData = ctx.at(1).tpm2b('qualifyingData', 66);
      const inScheme = readScheme(ctx.at(2));
      const sel = readSelection(ctx.at(3), 3);
      ctx.end();
      const { key, scheme } = signer(ctx.tpm, ctx.handles[0] as number, 1, inScheme, 2);
      const { selection, values } = selectedValues(ctx.tpm, sel);
      const pcrDigest = digest(scheme.hash, ...values);
      attest(
        ctx.tpm,
        key,
        scheme,
        qualifyingData,
        { type: TPM_ST.ATTEST_QUOTE, pcrSelect: selection, pcrDigest },
        ctx.out,
      );
    },
  },
  {
    cc: TPM_CC.Certify,
    name: 'Certify',
    handles: ['object', 'objectOrNull'],
    auth: ['admin', 'user'],
    run(ctx) {
      const qualifyingData = ctx.at(1).tpm2b('qualifyingData', 66);
      const inScheme = readScheme(ctx.at(2));
      ctx.end();
      const [objHandle, signHandle] = ctx.handles as [number, number];
      const obj = ctx.tpm.object(objHandle) as SimObject;
      const s = signHandle === TPM_RH.NULL ? undefined : signer(ctx.tpm, signHandle, 2, inScheme, 2);
      const attested: Attested = {
        type: TPM_ST.ATTEST_CERTIFY,
        name: obj.name,
        qualifiedName: obj.qualifiedName,
      };
      attest(ctx.tpm, s?.key, s?.scheme, qualifyingData, attested, ctx.out);
    },
  },
  {
    cc: TPM_CC.Sign,
    name: 'Sign',
    handles: ['object'],
    auth: ['user'],
    run(ctx) {
      const dig = ctx.at(1).tpm2b('digest', 64);
      const inScheme = readScheme(ctx.at(2));
      const r = ctx.at(3);
      const tag = r.u16();
      const hierarchy = r.u32();
      const ticket = r.tpm2b('ticket', 64);
      ctx.end();
      const tpm = ctx.tpm;
      const { key, scheme } = signer(tpm, ctx.handles[0] as number, 1, inScheme, 2);
      const h = HASHES[scheme.hash] as { size: number; node: string };
      if (dig.length !== h.size) throw rcParam(RC.SIZE, 1);
      if (tag !== TPM_ST.HASHCHECK) throw rcParam(RC.TAG, 3);
      if (has(key.pub.attributes, TPMA_OBJECT.restricted)) {
        if (hierarchy === TPM_RH.NULL) throw rcParam(RC.TICKET, 3);
        const st = Buffer.alloc(2);
        st.writeUInt16BE(TPM_ST.HASHCHECK);
        const expect = createHmac('sha512', tpm.proof(hierarchy)).update(st).update(dig).digest();
        if (!expect.equals(ticket)) throw rcParam(RC.TICKET, 3);
      }
      let sig: Buffer;
      const p = key.pub.params;
      if (p.type === TPM_ALG.ECC) {
        const size = curveInfo(p.curve).size;
        const { r: rr, s } = ecdsaSignDigest(p.curve, key.sensitive, dig, () =>
          tpm.config.random.bytes(size),
        );
        sig = Buffer.concat([rr, s]);
      } else {
        const info = Buffer.from(DIGEST_INFO[scheme.hash] as string, 'hex');
        sig = privateEncrypt(
          { key: privateKeyOf(key), padding: cc.RSA_PKCS1_PADDING },
          Buffer.concat([info, dig]),
        );
      }
      writeSig(ctx.out, scheme, sig);
    },
  },
];
