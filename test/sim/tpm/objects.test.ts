import { constants, createHash, verify } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { publicKeyOf } from '../../../attestors/tpm/crypto/name.ts';
import type { Reader } from '../../../attestors/tpm/wire/buffer.ts';
import { TPM_ALG, TPM_CC, TPM_RH, TPM_ST } from '../../../attestors/tpm/wire/constants.ts';
import { parsePublic, type TpmtPublic } from '../../../attestors/tpm/wire/public.ts';
import { RC } from '../../../attestors/tpm/wire/rc.ts';
import { srkEccP256Template } from '../../../attestors/tpm/wire/templates.ts';
import { seededRandom } from '../../../sim/random.ts';
import { openSim, type SimHarness } from './harness.ts';
import {
  command,
  create,
  createPrimary,
  flush,
  load,
  params,
  policyGetDigest,
  policySecret,
  startPolicy,
} from './wire.ts';

const ECDSA_KEY: TpmtPublic = {
  type: TPM_ALG.ECC,
  nameAlg: TPM_ALG.SHA256,
  attributes: 0x00040472,
  authPolicy: Buffer.alloc(0),
  params: {
    type: TPM_ALG.ECC,
    symmetric: { alg: TPM_ALG.NULL },
    scheme: { scheme: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256 },
    curve: 0x0003,
    kdf: { scheme: TPM_ALG.NULL },
  },
  unique: Buffer.alloc(0),
  eccX: Buffer.alloc(0),
  eccY: Buffer.alloc(0),
};

const RSA_KEY: TpmtPublic = {
  type: TPM_ALG.RSA,
  nameAlg: TPM_ALG.SHA256,
  attributes: 0x00040472,
  authPolicy: Buffer.alloc(0),
  params: {
    type: TPM_ALG.RSA,
    symmetric: { alg: TPM_ALG.NULL },
    scheme: { scheme: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256 },
    keyBits: 2048,
    exponent: 0,
  },
  unique: Buffer.alloc(0),
};

async function child(sim: SimHarness, srk: number, tpl: TpmtPublic): Promise<{ h: number; pub: TpmtPublic }> {
  const c = params(await sim.run(create(srk, tpl))).r;
  const priv = c.tpm2b();
  const pubBytes = c.tpm2b();
  const h = params(await sim.run(load(srk, priv, pubBytes)), true).handle as number;
  return { h, pub: parsePublic(pubBytes) };
}

const sign = (h: number, digest: Buffer): Buffer =>
  command(TPM_CC.Sign, [h], [{ handle: TPM_RH.PW, attributes: 1 }], (w) =>
    w.tpm2b(digest).u16(TPM_ALG.NULL).u16(TPM_ST.HASHCHECK).u32(TPM_RH.NULL).u16(0),
  );

function signature(r: Reader): { alg: number; bytes: Buffer } {
  const alg = r.u16();
  r.u16();
  if (alg === TPM_ALG.ECDSA) return { alg, bytes: Buffer.concat([r.tpm2b(), r.tpm2b()]) };
  return { alg, bytes: r.tpm2b() };
}

let sim: SimHarness;
let srk: number;
test.before(async () => {
  sim = await openSim({ ekTypes: ['ecc'], random: seededRandom('objects') });
  srk = params(await sim.run(createPrimary(TPM_RH.OWNER, srkEccP256Template())), true).handle as number;
});
test.after(async () => sim.cleanup());

test('Sign with unrestricted ECDSA and RSASSA keys over a caller digest verifies with node:crypto', async () => {
  const message = Buffer.from('edgeward device CSR');
  const digest = createHash('sha256').update(message).digest();
  for (const tpl of [ECDSA_KEY, RSA_KEY]) {
    const { h, pub } = await child(sim, srk, tpl);
    const s = signature(params(await sim.run(sign(h, digest))).r);
    const key = publicKeyOf(pub);
    const ok =
      s.alg === TPM_ALG.ECDSA
        ? verify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, s.bytes)
        : verify('sha256', message, { key, padding: constants.RSA_PKCS1_PADDING }, s.bytes);
    assert.ok(ok, `signature of alg 0x${s.alg.toString(16)} verifies`);
    assert.is((await sim.run(sign(h, digest.subarray(0, 20)))).rc, 0x1d5, 'digest of the wrong size');
    await sim.run(flush(h));
  }
});

test('Load refuses a private blob that was altered or made under another parent', async () => {
  const c = params(await sim.run(create(srk, ECDSA_KEY))).r;
  const priv = c.tpm2b();
  const pub = c.tpm2b();
  const bad = Buffer.from(priv);
  bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 1;
  assert.is((await sim.run(load(srk, bad, pub))).rc, 0x1df, 'INTEGRITY, parameter 1');
  const other = params(await sim.run(createPrimary(TPM_RH.ENDORSEMENT, srkEccP256Template())), true)
    .handle as number;
  assert.is((await sim.run(load(other, priv, pub))).rc, 0x1df, 'wrapped for another parent');
  assert.is(
    (await sim.run(create(other, { ...ECDSA_KEY, attributes: 0x00070472 }))).rc,
    0x2c2,
    'restricted sign+decrypt',
  );
  await sim.run(flush(other));
});

test('a saved session context keeps its handle and digest, loads back once, and is no longer usable meanwhile', async () => {
  const h = params(await sim.run(startPolicy()), true).handle as number;
  assert.is((await sim.run(policySecret(TPM_RH.ENDORSEMENT, h))).rc, 0);
  const before = params(await sim.run(policyGetDigest(h))).r.tpm2b();
  const saved = params(await sim.run(command(TPM_CC.ContextSave, [h]))).r;
  const ctx = saved.bytes(saved.remaining);
  assert.is((await sim.run(policyGetDigest(h))).rc, RC.REFERENCE_H0);
  const loadCtx = command(TPM_CC.ContextLoad, [], undefined, (w) => w.bytes(ctx));
  assert.is(params(await sim.run(loadCtx), true).handle, h);
  assert.equal(params(await sim.run(policyGetDigest(h))).r.tpm2b(), before);
  assert.is((await sim.run(loadCtx)).rc, 0x1cb, 'a session context loads only once');
  await sim.tpm.reset();
  assert.is((await sim.run(loadCtx)).rc, 0x1df, 'contexts die with a TPM Reset');
});

test.run();
