/**
 * Object commands (Part 3 §24.1 CreatePrimary, §12.1 Create, §12.2 Load, §12.4 ReadPublic,
 * §12.7 Unseal). Primaries are derived from the hierarchy seed and the template; children are
 * random, wrapped under their storage parent's seed, and only load under that parent.
 */

import { createHmac } from 'node:crypto';
import { digest } from '../../../attestors/tpm/crypto/kdf.ts';
import { handleName, objectName } from '../../../attestors/tpm/crypto/name.ts';
import { Writer } from '../../../attestors/tpm/wire/buffer.ts';
import { TPM_ALG, TPM_CC, TPM_RH, TPM_ST, TPMA_OBJECT } from '../../../attestors/tpm/wire/constants.ts';
import { type PcrSelection, writePcrSelection } from '../../../attestors/tpm/wire/pcr-selection.ts';
import {
  bound,
  derivePrimary,
  generate,
  readInPublic,
  readSensitiveCreate,
  validateTemplate,
} from '../create.ts';
import { has, qualifiedNameOf, type SimObject } from '../object.ts';
import { RC, rc, rcHandle, rcParam } from '../rc.ts';
import { readSelection } from '../selection.ts';
import type { CommandContext, CommandSpec } from '../spec.ts';
import { MAX_OBJECTS, type Tpm } from '../tpm.ts';
import { marshalSensitive, parseSensitive, unwrap, type WrapKey, wrap } from '../wrap.ts';
import { selectedValues } from './pcr.ts';

function requireSlot(tpm: Tpm): void {
  if (tpm.objects.filter((o) => o !== undefined).length >= MAX_OBJECTS) throw rc(RC.OBJECT_MEMORY);
}

/** A restricted decryption key that can be a parent (Part 1 "Storage Keys"). */
export function storageParent(tpm: Tpm, handle: number, n: number): SimObject {
  const parent = tpm.object(handle) as SimObject;
  const a = parent.pub.attributes;
  const ok =
    parent.pub.type !== TPM_ALG.KEYEDHASH &&
    has(a, TPMA_OBJECT.restricted) &&
    has(a, TPMA_OBJECT.decrypt) &&
    !has(a, TPMA_OBJECT.sign);
  if (!ok) throw rcHandle(RC.TYPE, n);
  return parent;
}

export function wrapKeyOf(parent: SimObject): WrapKey {
  const p = parent.pub.params;
  const keyBits = p.type === TPM_ALG.KEYEDHASH ? 128 : (p.symmetric.keyBits ?? 128);
  return { hashAlg: parent.pub.nameAlg, seed: parent.seedValue, keyBits };
}

interface ParentInfo {
  readonly nameAlg: number;
  readonly name: Buffer;
  readonly qn: Buffer;
}

/** TPMS_CREATION_DATA, its hash and the creation ticket (Part 2 §15.1, §10.7.3). */
function writeCreation(
  ctx: CommandContext,
  obj: SimObject,
  parent: ParentInfo,
  outsideInfo: Buffer,
  sel: PcrSelection,
): void {
  const { selection, values } = selectedValues(ctx.tpm, sel);
  const w = new Writer();
  writePcrSelection(w, selection);
  w.tpm2b(digest(obj.pub.nameAlg, ...values));
  w.u8(0x01).u16(parent.nameAlg).tpm2b(parent.name).tpm2b(parent.qn).tpm2b(outsideInfo);
  const data = w.finish();
  const hash = digest(obj.pub.nameAlg, data);
  const st = Buffer.alloc(2);
  st.writeUInt16BE(TPM_ST.CREATION);
  // Tickets are HMACs under the hierarchy proof with the context-integrity hash (SHA-512, as libtpms).
  const ticket = createHmac('sha512', ctx.tpm.proof(obj.hierarchy))
    .update(st)
    .update(obj.name)
    .update(hash)
    .digest();
  ctx.out.tpm2b(data).tpm2b(hash).u16(TPM_ST.CREATION).u32(obj.hierarchy).tpm2b(ticket);
}

const randomStream =
  (tpm: Tpm) =>
  (_label: string, _i: number, bytes: number): Buffer =>
    tpm.config.random.bytes(bytes);

export const objectCommands: readonly CommandSpec[] = [
  {
    cc: TPM_CC.CreatePrimary,
    name: 'CreatePrimary',
    handles: ['hierarchy'],
    auth: ['user'],
    responseHandle: true,
    run(ctx) {
      const sens = readSensitiveCreate(ctx.at(1), 1);
      const { pub: tpl, bytes } = readInPublic(ctx.at(2), 2);
      const outsideInfo = ctx.at(3).tpm2b('outsideInfo', 66);
      const sel = readSelection(ctx.at(4), 4);
      ctx.end();
      validateTemplate(tpl, 2, sens);
      const tpm = ctx.tpm;
      requireSlot(tpm);
      const hierarchy = ctx.handles[0] as number;
      const seed = tpm.seedOf(hierarchy);
      const before = tpm.state.rsaCache.size;
      const cache = hierarchy === TPM_RH.NULL ? undefined : tpm.state.rsaCache;
      const g = derivePrimary(seed, bytes, tpl, sens, cache);
      if (tpm.state.rsaCache.size !== before) tpm.save();
      const hName = handleName(hierarchy);
      const obj: SimObject = { ...g, qualifiedName: qualifiedNameOf(hName, g.name), hierarchy };
      ctx.setHandle(tpm.load(obj));
      ctx.out.tpm2b(g.pubBytes);
      writeCreation(ctx, obj, { nameAlg: TPM_ALG.NULL, name: hName, qn: hName }, outsideInfo, sel);
      ctx.out.tpm2b(g.name);
    },
  },
  {
    cc: TPM_CC.Create,
    name: 'Create',
    handles: ['object'],
    auth: ['user'],
    run(ctx) {
      const sens = readSensitiveCreate(ctx.at(1), 1);
      const { pub: tpl } = readInPublic(ctx.at(2), 2);
      const outsideInfo = ctx.at(3).tpm2b('outsideInfo', 66);
      const sel = readSelection(ctx.at(4), 4);
      ctx.end();
      const parent = storageParent(ctx.tpm, ctx.handles[0] as number, 1);
      validateTemplate(tpl, 2, sens);
      if (has(tpl.attributes, TPMA_OBJECT.fixedTPM) && !has(parent.pub.attributes, TPMA_OBJECT.fixedTPM))
        throw rcParam(RC.ATTRIBUTES, 2);
      const g = generate(tpl, sens, randomStream(ctx.tpm));
      const obj: SimObject = {
        ...g,
        qualifiedName: qualifiedNameOf(parent.qualifiedName, g.name),
        hierarchy: parent.hierarchy,
      };
      const priv = wrap(
        wrapKeyOf(parent),
        g.name,
        marshalSensitive({
          type: tpl.type,
          authValue: g.authValue,
          seedValue: g.seedValue,
          sensitive: g.sensitive,
        }),
        ctx.tpm.config.random.bytes(16),
      );
      ctx.out.tpm2b(priv).tpm2b(g.pubBytes);
      writeCreation(
        ctx,
        obj,
        { nameAlg: parent.pub.nameAlg, name: parent.name, qn: parent.qualifiedName },
        outsideInfo,
        sel,
      );
    },
  },
  {
    cc: TPM_CC.Load,
    name: 'Load',
    handles: ['object'],
    auth: ['user'],
    responseHandle: true,
    run(ctx) {
      const inPrivate = ctx.at(1).tpm2b('inPrivate', 1024);
      const { pub, bytes } = readInPublic(ctx.at(2), 2);
      ctx.end();
      const tpm = ctx.tpm;
      const parent = storageParent(tpm, ctx.handles[0] as number, 1);
      validateTemplate(pub, 2);
      requireSlot(tpm);
      const name = objectName(bytes);
      const plain = unwrap(wrapKeyOf(parent), name, inPrivate, true);
      if (plain === undefined) throw rcParam(RC.INTEGRITY, 1);
      let s: ReturnType<typeof parseSensitive>;
      try {
        s = parseSensitive(plain);
      } catch {
        throw rcParam(RC.INTEGRITY, 1);
      }
      if (s.type !== pub.type) throw rcParam(RC.TYPE, 2);
      if (!bound(pub, s.seedValue, s.sensitive)) throw rcParam(RC.BINDING, 2);
      const obj: SimObject = {
        pub,
        pubBytes: bytes,
        name,
        qualifiedName: qualifiedNameOf(parent.qualifiedName, name),
        hierarchy: parent.hierarchy,
        authValue: s.authValue,
        seedValue: s.seedValue,
        sensitive: s.sensitive,
      };
      ctx.setHandle(tpm.load(obj));
      ctx.out.tpm2b(name);
    },
  },
  {
    cc: TPM_CC.ReadPublic,
    name: 'ReadPublic',
    handles: ['object'],
    auth: [],
    run(ctx) {
      ctx.end();
      const obj = ctx.tpm.object(ctx.handles[0] as number) as SimObject;
      ctx.out.tpm2b(obj.pubBytes).tpm2b(obj.name).tpm2b(obj.qualifiedName);
    },
  },
  {
    cc: TPM_CC.Unseal,
    name: 'Unseal',
    handles: ['object'],
    auth: ['user'],
    run(ctx) {
      ctx.end();
      const obj = ctx.tpm.object(ctx.handles[0] as number) as SimObject;
      if (obj.pub.type !== TPM_ALG.KEYEDHASH) throw rcHandle(RC.TYPE, 1);
      const a = obj.pub.attributes;
      if (has(a, TPMA_OBJECT.sign) || has(a, TPMA_OBJECT.decrypt) || has(a, TPMA_OBJECT.restricted))
        throw rcHandle(RC.ATTRIBUTES, 1);
      ctx.out.tpm2b(obj.sensitive);
    },
  },
];
