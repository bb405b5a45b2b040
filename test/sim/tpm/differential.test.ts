/**
 * Differential test: the same command bytes go to a real swtpm 0.7 and to the simulator, and
 * everything that does not depend on the TPM's secret seeds must match — response codes for the
 * same bad inputs, response structure and sizes, public areas (all but `unique`), policy digests
 * from trial sessions, PCR values after the same extends, and the fields of a quote.
 * (Commands whose size field lies are refused by the client's swtpm transport before they leave,
 * so those codes are checked against swtpm in dispatch.test.ts from values measured by hand.)
 */
import { createHash, verify } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { publicKeyOf } from '../../../attestors/tpm/crypto/name.ts';
import { emptyPolicy, policyPcrUpdate, policySecretUpdate } from '../../../attestors/tpm/crypto/policy.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import type { TpmTransport } from '../../../attestors/tpm/transport/transport.ts';
import { parseAttest, parseSignature } from '../../../attestors/tpm/wire/attest.ts';
import { TPM_ALG, TPM_CC, TPM_RH, TPM_ST } from '../../../attestors/tpm/wire/constants.ts';
import { parsePublic } from '../../../attestors/tpm/wire/public.ts';
import { RC } from '../../../attestors/tpm/wire/rc.ts';
import {
  akEccP256Template,
  eccSigningTemplate,
  ekEccP256Template,
  sealedTemplate,
  srkEccP256Template,
} from '../../../attestors/tpm/wire/templates.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { openSim } from './harness.ts';
import {
  command,
  create,
  createPrimary,
  flush,
  getCapability,
  hex,
  load,
  PW,
  params,
  pcrExtend,
  pcrRead,
  policy,
  policyGetDigest,
  policyPcr,
  policySecret,
  quote,
  type Response,
  response,
  sign,
  startPolicy,
} from './wire.ts';

const swtpm = await launchSwtpm();
const real = await openTransport(swtpm.spec);
const sim = await openSim();

async function both(cmd: Buffer): Promise<[Response, Response]> {
  const send = async (t: TpmTransport) => response(await t.send(cmd));
  return [await send(real), await send(sim.tpm)];
}

/** Send to both; flush any handle each returned (so the TPMs stay in step). */
async function bothThenFlush(cmd: Buffer, hasHandle: boolean): Promise<[Response, Response]> {
  const out = await both(cmd);
  for (const [i, r] of out.entries()) {
    if (hasHandle && r.rc === 0) {
      const h = r.bytes.readUInt32BE(10);
      await (i === 0 ? real : sim.tpm).send(flush(h));
    }
  }
  return out;
}

test.after(async () => {
  await swtpm.stop(real);
  await real.close();
  await sim.cleanup();
});

test('the same bad inputs get the same response codes', async () => {
  const persistentEk = 0x81010001;
  const cases: [string, Buffer][] = [
    ['unknown command code', hex('80010000000a00000999')],
    ['tag 0x8002 without an auth area', hex('80020000000e0000017381010001')],
    ['auth area of size 0', hex('8002000000120000017381010001 00000000')],
    ['empty transient slot', command(TPM_CC.ReadPublic, [0x80000002])],
    ['transient beyond the slots', command(TPM_CC.ReadPublic, [0x80000005])],
    ['absent persistent', command(TPM_CC.ReadPublic, [0x81000005])],
    ['permanent handle as object', command(TPM_CC.ReadPublic, [TPM_RH.ENDORSEMENT])],
    ['extra password session', command(TPM_CC.ReadPublic, [persistentEk], [PW])],
    ['policy session not loaded', command(TPM_CC.PolicyGetDigest, [0x03000002])],
    ['flush of nothing', flush(0x80000002)],
    ['nonceCaller of 15 bytes', startPolicy(Buffer.alloc(15))],
    ['nonceCaller of 33 bytes', startPolicy(Buffer.alloc(33))],
    ['PCR_Read with sizeofSelect 2', hex('800100000013 0000017e 00000001 000b 02 ffff')],
    ['PCR_Reset(0) from locality 0', command(TPM_CC.PCR_Reset, [0], [PW])],
    ['password on the low-range EK (no userWithAuth)', command(TPM_CC.Unseal, [persistentEk], [PW])],
    [
      'wrong owner password',
      createPrimary(TPM_RH.OWNER, srkEccP256Template(), { handle: TPM_RH.PW, hmac: Buffer.from('x') }),
    ],
    [
      'auth handle with tag 0x8001',
      Buffer.from(createPrimary(TPM_RH.OWNER, srkEccP256Template())).fill(1, 1, 2),
    ],
    [
      'Sign with the EK (not a signing key)',
      command(TPM_CC.Quote, [persistentEk], [PW], (w) => w.u16(0).u16(0x10).u32(0)),
    ],
    ['sealed data of 129 bytes', create(persistentEk, sealedTemplate(Buffer.alloc(32)), Buffer.alloc(129))],
    ['Startup when started', hex('80010000000c000001440000')],
  ];
  for (const [what, bytes] of cases) {
    const [r, s] = await both(bytes);
    assert.is(`0x${s.rc.toString(16)}`, `0x${r.rc.toString(16)}`, what);
    assert.is(s.bytes.length, r.bytes.length, `${what}: length`);
  }
});

test('bad tags: swtpm 0.7.1 answers TPM_RC_VALUE (0x084), the simulator the specified TPM_RC_BAD_TAG', async () => {
  const [r, s] = await both(hex('80030000000e0000017381010001'));
  assert.is(r.rc, 0x084, 'libtpms 0.9.2 behaviour, measured');
  assert.is(s.rc, RC.BAD_TAG, 'Part 1 command header validation: TPM_RC_BAD_TAG');
});

test('primaries from the same template: same public area but for the seed-derived unique, same sizes', async () => {
  for (const [hierarchy, tpl] of [
    [TPM_RH.OWNER, srkEccP256Template()],
    [TPM_RH.ENDORSEMENT, akEccP256Template()],
    [TPM_RH.ENDORSEMENT, ekEccP256Template()],
  ] as const) {
    const [r, s] = await bothThenFlush(createPrimary(hierarchy, tpl), true);
    assert.is(s.rc, r.rc);
    assert.is(s.bytes.length, r.bytes.length, 'response length');
    const pr = params(r, true).r;
    const ps = params(s, true).r;
    const [pubR, pubS] = [parsePublic(pr.tpm2b()), parsePublic(ps.tpm2b())];
    assert.equal({ ...pubS, unique: 0, eccX: 0, eccY: 0 }, { ...pubR, unique: 0, eccX: 0, eccY: 0 });
    assert.is(pubS.eccX?.length, pubR.eccX?.length);
    const [cdR, cdS] = [pr.tpm2b(), ps.tpm2b()];
    assert.is(cdS.length, cdR.length, 'creation data length');
    assert.equal(cdS.subarray(0, 7), cdR.subarray(0, 7), 'creation data: pcrSelect and pcrDigest');
  }
});

test('trial-session policy digests match each other and software (PolicySecret, PolicyPCR)', async () => {
  const sel = [{ hash: TPM_ALG.SHA256, pcrs: [0, 7] }];
  const digests: Buffer[] = [];
  for (const t of [real, sim.tpm]) {
    const start = response(await t.send(startPolicy(Buffer.alloc(16, 1), true)));
    const h = params(start, true).handle as number;
    assert.is(response(await t.send(policySecret(TPM_RH.ENDORSEMENT, h))).rc, 0);
    assert.is(response(await t.send(policyPcr(h, sel))).rc, 0);
    digests.push(params(response(await t.send(policyGetDigest(h)))).r.tpm2b());
    await t.send(flush(h));
  }
  const pcrDigest = hex('f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b');
  const expected = policyPcrUpdate(
    TPM_ALG.SHA256,
    policySecretUpdate(TPM_ALG.SHA256, emptyPolicy(TPM_ALG.SHA256), Buffer.from('4000000b', 'hex')),
    sel,
    pcrDigest,
  );
  assert.equal(digests[0], expected);
  assert.equal(digests[1], expected);
});

test('PCR values after the same extends match; a quote has the same structure and PCR digest', async () => {
  for (const pcr of [0, 7, 16]) {
    const [r, s] = await both(pcrExtend(pcr, TPM_ALG.SHA256, Buffer.alloc(32, pcr + 1)));
    assert.is(s.rc, r.rc, `extend ${pcr}`);
  }
  const sel = [{ hash: TPM_ALG.SHA256, pcrs: [0, 1, 2, 7, 16] }];
  const [rr, rs] = await both(pcrRead(sel));
  const vr = params(rr).r;
  const vs = params(rs).r;
  vr.u32();
  vs.u32();
  assert.equal(vs.bytes(vs.remaining), vr.bytes(vr.remaining), 'selection and values');
  const quotes = [];
  for (const t of [real, sim.tpm]) {
    const ak = params(response(await t.send(createPrimary(TPM_RH.ENDORSEMENT, akEccP256Template()))), true);
    const q = response(await t.send(quote(ak.handle as number, Buffer.alloc(32, 9), sel)));
    assert.is(q.rc, 0);
    const p = params(q).r;
    quotes.push({ attest: parseAttest(p.tpm2b()), sigAlg: p.u16(), hash: p.u16(), size: q.bytes.length });
    await t.send(flush(ak.handle as number));
  }
  const [qr, qs] = quotes as [(typeof quotes)[0], (typeof quotes)[0]];
  assert.equal(qs.attest.attested, qr.attest.attested, 'pcrSelect and pcrDigest');
  assert.equal(qs.attest.extraData, qr.attest.extraData);
  assert.is(qs.attest.qualifiedSigner.length, qr.attest.qualifiedSigner.length);
  assert.is(qs.attest.clockInfo.safe, qr.attest.clockInfo.safe);
  assert.equal([qs.sigAlg, qs.hash], [qr.sigAlg, qr.hash]);
  assert.ok(Math.abs(qs.size - qr.size) <= 2, 'same size up to ECDSA integer lengths');
});

test('sessions: the same handles, nonce sizes, response auth layout and flush-after-use semantics', async () => {
  const out: string[][] = [];
  for (const t of [real, sim.tpm]) {
    const log: string[] = [];
    const start = response(await t.send(startPolicy(Buffer.alloc(20, 1))));
    const sp = params(start, true);
    const h = sp.handle as number;
    log.push(h.toString(16), String(sp.r.tpm2b().length));
    const ps = response(await t.send(policySecret(TPM_RH.ENDORSEMENT, h)));
    log.push(ps.rc.toString(16), ps.tag.toString(16), ps.bytes.subarray(-5).toString('hex'));
    // Unseal on the EK with the policy session without continueSession: the EK is no sealed object.
    const use = response(await t.send(command(TPM_CC.Unseal, [0x81010001], [policy(h, false)])));
    log.push(use.rc.toString(16));
    const f = response(await t.send(flush(h)));
    log.push(f.rc.toString(16));
    out.push(log);
  }
  assert.equal(out[1], out[0]);
  assert.is(TPM_ST.SESSIONS, 0x8002);
});

test('capability answers have the same shape: PCR banks, command attributes of common commands', async () => {
  const [r, s] = await both(getCapability(5, 0, 1));
  assert.equal(s.bytes, r.bytes, 'active banks (sha256 only, as swtpm_setup configures)');
  for (const cc of [TPM_CC.Quote, TPM_CC.CreatePrimary, TPM_CC.FlushContext, TPM_CC.ActivateCredential]) {
    const [cr, cs] = await both(getCapability(2, cc, 1));
    const ar = params(cr).r;
    const as = params(cs).r;
    ar.bytes(9);
    as.bytes(9);
    assert.is(as.u32() & 0x1e00ffff, ar.u32() & 0x1e00ffff, `TPMA_CC of 0x${cc.toString(16)}`);
  }
});

test('an ECDSA signing key under the storage primary: Create, Load, Sign, FlushContext answer alike', async () => {
  const digest = createHash('sha256').update('tbs').digest();
  const logs: string[][] = [];
  const pubs = [];
  for (const t of [real, sim.tpm]) {
    const log: string[] = [];
    const srk = params(response(await t.send(createPrimary(TPM_RH.OWNER, srkEccP256Template()))), true)
      .handle as number;
    const c = response(await t.send(create(srk, eccSigningTemplate())));
    log.push(`create ${c.rc.toString(16)} ${c.bytes.length}`);
    const cp = params(c).r;
    const priv = cp.tpm2b();
    const pubBytes = cp.tpm2b();
    log.push(`private ${priv.length}`, `creationData ${cp.tpm2b().length}`);
    const pub = parsePublic(pubBytes);
    pubs.push({ ...pub, unique: 0, eccX: pub.eccX?.length, eccY: pub.eccY?.length });
    const l = response(await t.send(load(srk, priv, pubBytes)));
    log.push(`load ${l.rc.toString(16)} ${l.bytes.length}`);
    const key = params(l, true).handle as number;
    log.push(`handle ${key.toString(16)}`);
    const tampered = Buffer.from(priv);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 1;
    log.push(
      `load tampered private ${response(await t.send(load(srk, tampered, pubBytes))).rc.toString(16)}`,
    );
    log.push(
      `load truncated private ${response(await t.send(load(srk, priv.subarray(0, 40), pubBytes))).rc.toString(16)}`,
    );
    // The parent can go; the loaded child stays.
    log.push(`flush srk ${response(await t.send(flush(srk))).rc.toString(16)}`);
    for (const scheme of [{ alg: TPM_ALG.NULL }, { alg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256 }]) {
      const sr = response(await t.send(sign(key, digest, scheme)));
      log.push(`sign ${sr.rc.toString(16)} ${sr.tag.toString(16)}`);
      const sig = parseSignature(params(sr).r.bytes(sr.bytes.length - 14 - 5));
      assert.ok(sig.sigAlg === TPM_ALG.ECDSA, 'ECDSA signature');
      if (sig.sigAlg !== TPM_ALG.ECDSA) return;
      log.push(`sig ${sig.sigAlg.toString(16)} ${sig.hash.toString(16)}`);
      const pad = (b: Uint8Array) => Buffer.concat([Buffer.alloc(32 - b.length), b]);
      assert.ok(
        verify(
          'sha256',
          Buffer.from('tbs'),
          { key: publicKeyOf(pub), dsaEncoding: 'ieee-p1363' },
          Buffer.concat([pad(sig.r), pad(sig.s)]),
        ),
      );
    }
    for (const [what, bytes] of [
      ['sign: digest of 20 bytes', sign(key, digest.subarray(0, 20))],
      [
        'sign: SHA-384 scheme on an SHA-256 key',
        sign(key, digest, { alg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA384 }),
      ],
      ['sign: RSASSA scheme on an ECC key', sign(key, digest, { alg: TPM_ALG.RSASSA, hash: TPM_ALG.SHA256 })],
      ['load under a hierarchy handle', load(TPM_RH.OWNER, priv, pubBytes)],
    ] as const)
      log.push(`${what} ${response(await t.send(bytes)).rc.toString(16)}`);
    log.push(`flush key ${response(await t.send(flush(key))).rc.toString(16)}`);
    log.push(`sign flushed ${response(await t.send(sign(key, digest))).rc.toString(16)}`);
    logs.push(log);
  }
  assert.equal(logs[1], logs[0]);
  assert.equal(pubs[1], pubs[0]);
});

test.run();
