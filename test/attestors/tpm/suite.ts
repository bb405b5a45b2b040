/**
 * The TPM command suite, parameterized by a transport factory so the same tests run against swtpm
 * (test/attestors/tpm/commands.swtpm.test.ts) and against the TypeScript simulator in sim/tpm.
 * Every command round-trips and its result is checked against software (names, policy digests,
 * the verifier), not against itself.
 *
 * @example
 * ```ts
 * commandSuite('swtpm', async () => { const s = await launchSwtpm(); ... return { transport, reboot, close } });
 * ```
 */
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, verify, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { policyAuth } from '../../../attestors/tpm/client/auth.ts';
import { execute } from '../../../attestors/tpm/client/execute.ts';
import {
  activeBanks,
  flush,
  listHandles,
  readNv,
  readPcrs,
  startup,
  tpmProperties,
  tpmRandom,
} from '../../../attestors/tpm/client/helpers.ts';
import {
  policyPcr,
  policySecretEndorsement,
  startPolicySession,
  withPolicySession,
} from '../../../attestors/tpm/client/sessions.ts';
import { Certify, Quote, Sign } from '../../../attestors/tpm/commands/attest.ts';
import { ContextLoad, ContextSave, EvictControl } from '../../../attestors/tpm/commands/context.ts';
import { ActivateCredential, MakeCredential } from '../../../attestors/tpm/commands/credential.ts';
import { CreatePrimary } from '../../../attestors/tpm/commands/hierarchy.ts';
import { NV_ReadPublic } from '../../../attestors/tpm/commands/nv.ts';
import { Create, Load, ReadPublic, Unseal } from '../../../attestors/tpm/commands/object.ts';
import { PCR_Extend, PCR_Reset } from '../../../attestors/tpm/commands/pcr.ts';
import { PolicyGetDigest, PolicyRestart } from '../../../attestors/tpm/commands/session.ts';
import { objectName, publicKeyOf } from '../../../attestors/tpm/crypto/name.ts';
import { emptyPolicy, pcrValuesDigest, policyPcrUpdate } from '../../../attestors/tpm/crypto/policy.ts';
import { createSigningKey, parseSigningKeyBlob, TpmSigningKey } from '../../../attestors/tpm/signing-key.ts';
import type { TpmTransport } from '../../../attestors/tpm/transport/transport.ts';
import { makeCredential, parseEkCertificate, verifyQuote } from '../../../attestors/tpm/verify/index.ts';
import { parseAttest, parseSignature } from '../../../attestors/tpm/wire/attest.ts';
import { EK_NV, TPM_ALG, TPM_PT, TPM_RH, TPM_ST } from '../../../attestors/tpm/wire/constants.ts';
import { parsePcrSelection } from '../../../attestors/tpm/wire/pcr-selection.ts';
import { marshalPublic, parsePublic } from '../../../attestors/tpm/wire/public.ts';
import { isRc, RC } from '../../../attestors/tpm/wire/rc.ts';
import {
  akEccP256Template,
  EK_POLICY_A_SHA256,
  eccSigningTemplate,
  ekEccP256Template,
  ekEccP384Template,
  SIGNING_KEY_ATTRIBUTES,
  sealedTemplate,
  srkEccP256Template,
} from '../../../attestors/tpm/wire/templates.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { createCaCsr } from '../../../runtime/svid/ca-key.ts';
import { parseCsr } from '../../../runtime/svid/csr.ts';
import { createCaSigner, createSigner, spkiOf } from '../../../runtime/svid/signer.ts';
import { seededRandom } from '../../../sim/random.ts';
import { rejects } from '../../helpers/rejects.ts';

export interface TpmUnderTest {
  readonly transport: TpmTransport;
  /** A simulated power cycle (PCRs back to zero). */
  reboot(): Promise<void>;
  close(): Promise<void>;
}

const NO_PCRS = parsePcrSelection('sha256:0').map((b) => ({ ...b, pcrs: [] }));
const EMPTY = new Uint8Array();
const rnd = seededRandom('command-suite');

async function primary(t: TpmTransport, hierarchy: number, template: Uint8Array) {
  return execute(t, CreatePrimary, {
    primaryHandle: hierarchy,
    inSensitive: { userAuth: EMPTY, data: EMPTY },
    inPublic: template,
    outsideInfo: EMPTY,
    creationPCR: NO_PCRS,
  });
}

async function expectRc(fn: () => Promise<unknown>, code: number): Promise<void> {
  try {
    await fn();
  } catch (err) {
    assert.ok(isRc(err, code), `expected rc 0x${code.toString(16)}, got ${(err as Error).message}`);
    return;
  }
  assert.unreachable(`expected rc 0x${code.toString(16)}`);
}

export function commandSuite(name: string, make: () => Promise<TpmUnderTest>): void {
  const s = suite<{ tpm?: TpmUnderTest }>(`TPM commands on ${name}`, {});
  s.before(async (ctx) => {
    ctx.tpm = await make();
  });
  s.after(async (ctx) => {
    await ctx.tpm?.close();
  });
  const T = (ctx: { tpm?: TpmUnderTest }): TpmTransport => (ctx.tpm as TpmUnderTest).transport;

  s('Startup tolerates a started TPM; capabilities page and name the TPM', async (ctx) => {
    const t = T(ctx);
    await startup(t);
    const props = await tpmProperties(t);
    assert.ok((props.get(TPM_PT.MANUFACTURER) ?? 0) !== 0);
    assert.is(props.get(TPM_PT.PCR_COUNT), 24);
    assert.ok((await activeBanks(t)).includes(TPM_ALG.SHA256));
    assert.ok(Array.isArray(await listHandles(t, 0x81000000)));
  });

  s('GetRandom loops past the digest size', async (ctx) => {
    const a = await tpmRandom(T(ctx), 100);
    const b = await tpmRandom(T(ctx), 100);
    assert.is(a.length, 100);
    assert.not.equal(a, b);
  });

  s('PCR_Read chunks past 8 digests; PCR_Extend is H(old ‖ d); PCR_Reset zeroes PCR 16', async (ctx) => {
    const t = T(ctx);
    const all = await readPcrs(
      t,
      parsePcrSelection('sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23'),
    );
    assert.is(all.length, 24);
    assert.ok(all.every((v) => v.length === 32));
    const sel = parsePcrSelection('sha256:16');
    const [before] = await readPcrs(t, sel);
    const d = createHash('sha256').update('edgeward').digest();
    await execute(t, PCR_Extend, { pcrHandle: 16, digests: [{ hash: TPM_ALG.SHA256, digest: d }] });
    const [after] = await readPcrs(t, sel);
    assert.equal(
      after,
      createHash('sha256')
        .update(before as Buffer)
        .update(d)
        .digest(),
    );
    await execute(t, PCR_Reset, { pcrHandle: 16 });
    assert.equal((await readPcrs(t, sel))[0], Buffer.alloc(32));
  });

  s(
    'CreatePrimary is deterministic; names match software; ReadPublic; Flush twice is HANDLE param 1',
    async (ctx) => {
      const t = T(ctx);
      const srk = marshalPublic(srkEccP256Template());
      const a = await primary(t, TPM_RH.OWNER, srk);
      const b = await primary(t, TPM_RH.OWNER, srk);
      try {
        assert.equal(a.outPublic, b.outPublic);
        assert.equal(Buffer.from(a.name), objectName(a.outPublic));
        const rp = await execute(t, ReadPublic, { objectHandle: a.objectHandle });
        assert.equal(rp.outPublic, a.outPublic);
        assert.equal(rp.name, a.name);
      } finally {
        await flush(t, b.objectHandle);
      }
      assert.ok(await flush(t, a.objectHandle));
      try {
        await execute(t, ContextSave, { saveHandle: a.objectHandle });
        assert.unreachable('flushed handle still usable');
      } catch (err) {
        assert.ok(isRc(err, RC.HANDLE) || isRc(err, RC.REFERENCE_H0), (err as Error).message);
      }
    },
  );

  s('ContextSave/ContextLoad carry an object; EvictControl persists and removes it', async (ctx) => {
    const t = T(ctx);
    const k = await primary(t, TPM_RH.OWNER, marshalPublic(srkEccP256Template()));
    const { context } = await execute(t, ContextSave, { saveHandle: k.objectHandle });
    await flush(t, k.objectHandle);
    const { loadedHandle } = await execute(t, ContextLoad, { context });
    try {
      assert.equal((await execute(t, ReadPublic, { objectHandle: loadedHandle })).name, k.name);
      const persistent = 0x81000123;
      await execute(t, EvictControl, {
        auth: TPM_RH.OWNER,
        objectHandle: loadedHandle,
        persistentHandle: persistent,
      });
      assert.ok((await listHandles(t, 0x81000000)).includes(persistent));
      assert.equal((await execute(t, ReadPublic, { objectHandle: persistent })).name, k.name);
      await execute(t, EvictControl, {
        auth: TPM_RH.OWNER,
        objectHandle: persistent,
        persistentHandle: persistent,
      });
      assert.not.ok((await listHandles(t, 0x81000000)).includes(persistent));
    } finally {
      await flush(t, loadedHandle);
    }
  });

  s('trial sessions compute the same policy digests as software; PolicyRestart clears', async (ctx) => {
    const t = T(ctx);
    await withPolicySession(
      t,
      rnd,
      async (ps) => {
        await policySecretEndorsement(t, ps);
        assert.equal(
          Buffer.from((await execute(t, PolicyGetDigest, { policySession: ps.handle })).policyDigest),
          EK_POLICY_A_SHA256,
        );
        await execute(t, PolicyRestart, { sessionHandle: ps.handle });
        assert.equal(
          Buffer.from((await execute(t, PolicyGetDigest, { policySession: ps.handle })).policyDigest),
          Buffer.alloc(32),
        );
        const sel = parsePcrSelection('sha256:0,7');
        await policyPcr(t, ps, sel);
        const values = await readPcrs(t, sel);
        const want = policyPcrUpdate(
          TPM_ALG.SHA256,
          emptyPolicy(TPM_ALG.SHA256),
          sel,
          pcrValuesDigest(TPM_ALG.SHA256, values),
        );
        assert.equal(
          Buffer.from((await execute(t, PolicyGetDigest, { policySession: ps.handle })).policyDigest),
          want,
        );
      },
      { trial: true },
    );
  });

  s('an AK under the SRK: quote verifies, Certify is type 0x8017, Sign needs a ticket', async (ctx) => {
    const t = T(ctx);
    const srk = await primary(t, TPM_RH.OWNER, marshalPublic(srkEccP256Template()));
    let ak: number | undefined;
    try {
      const c = await execute(t, Create, {
        parentHandle: srk.objectHandle,
        inSensitive: { userAuth: EMPTY, data: EMPTY },
        inPublic: marshalPublic(akEccP256Template()),
        outsideInfo: EMPTY,
        creationPCR: NO_PCRS,
      });
      assert.equal(createHash('sha256').update(c.creationData).digest(), Buffer.from(c.creationHash));
      ak = (
        await execute(t, Load, {
          parentHandle: srk.objectHandle,
          inPrivate: c.outPrivate,
          inPublic: c.outPublic,
        })
      ).objectHandle;
      const nonce = rnd.bytes(32);
      const sel = parsePcrSelection('sha256:0,1,2,3,4,5,6,7,16');
      const q = await execute(t, Quote, {
        signHandle: ak,
        qualifyingData: nonce,
        inScheme: { scheme: TPM_ALG.NULL },
        PCRselect: sel,
      });
      const values = await readPcrs(t, sel);
      verifyQuote({
        akPublic: c.outPublic,
        quote: q.quoted,
        signature: q.signature,
        nonce,
        selection: sel,
        pcrValues: values,
      });
      const cert = await execute(t, Certify, {
        objectHandle: ak,
        signHandle: ak,
        qualifyingData: nonce,
        inScheme: { scheme: TPM_ALG.NULL },
      });
      const attest = parseAttest(cert.certifyInfo);
      assert.is(attest.attested.type, TPM_ST.ATTEST_CERTIFY);
      assert.ok(publicKeyOf(parsePublic(c.outPublic)));
      await expectRc(
        () =>
          execute(t, Sign, {
            keyHandle: ak as number,
            digest: Buffer.alloc(32),
            inScheme: { scheme: TPM_ALG.NULL },
            validation: { tag: TPM_ST.HASHCHECK, hierarchy: TPM_RH.NULL, digest: EMPTY },
          }),
        RC.TICKET,
      );
    } finally {
      await flush(t, ak);
      await flush(t, srk.objectHandle);
    }
  });

  s('sealed data unseals only while the PCR policy holds; a password is refused', async (ctx) => {
    const t = T(ctx);
    const sel = parsePcrSelection('sha256:16');
    await execute(t, PCR_Reset, { pcrHandle: 16 });
    const policy = policyPcrUpdate(
      TPM_ALG.SHA256,
      emptyPolicy(TPM_ALG.SHA256),
      sel,
      pcrValuesDigest(TPM_ALG.SHA256, await readPcrs(t, sel)),
    );
    const srk = await primary(t, TPM_RH.OWNER, marshalPublic(srkEccP256Template()));
    let obj: number | undefined;
    try {
      const secret = rnd.bytes(32);
      const c = await execute(t, Create, {
        parentHandle: srk.objectHandle,
        inSensitive: { userAuth: EMPTY, data: secret },
        inPublic: marshalPublic(sealedTemplate(policy)),
        outsideInfo: EMPTY,
        creationPCR: NO_PCRS,
      });
      obj = (
        await execute(t, Load, {
          parentHandle: srk.objectHandle,
          inPrivate: c.outPrivate,
          inPublic: c.outPublic,
        })
      ).objectHandle;
      const item = obj;
      const unseal = () =>
        withPolicySession(t, rnd, async (ps) => {
          await policyPcr(t, ps, sel);
          return (await execute(t, Unseal, { itemHandle: item }, [policyAuth(ps.handle)])).outData;
        });
      assert.equal(Buffer.from(await unseal()), secret);
      await expectRc(() => execute(t, Unseal, { itemHandle: item }), RC.AUTH_UNAVAILABLE);
      await execute(t, PCR_Extend, {
        pcrHandle: 16,
        digests: [{ hash: TPM_ALG.SHA256, digest: Buffer.alloc(32, 1) }],
      });
      await expectRc(unseal, RC.POLICY_FAIL);
      await execute(t, PCR_Reset, { pcrHandle: 16 });
      assert.equal(Buffer.from(await unseal()), secret);
    } finally {
      await flush(t, obj);
      await flush(t, srk.objectHandle);
    }
  });

  s(
    'software MakeCredential is activated by the TPM (ECC L-2 with PolicySecret, ECC H-3 with password)',
    async (ctx) => {
      const t = T(ctx);
      const ak = await primary(t, TPM_RH.ENDORSEMENT, marshalPublic(akEccP256Template()));
      try {
        for (const [template, low] of [
          [ekEccP256Template(), true],
          [ekEccP384Template(), false],
        ] as const) {
          const ek = await primary(t, TPM_RH.ENDORSEMENT, marshalPublic(template));
          try {
            const credential = rnd.bytes(32);
            const mc = makeCredential(ek.outPublic, objectName(ak.outPublic), credential, rnd);
            const activate = (auths: Parameters<typeof execute>[3]) =>
              execute(
                t,
                ActivateCredential,
                {
                  activateHandle: ak.objectHandle,
                  keyHandle: ek.objectHandle,
                  credentialBlob: mc.credentialBlob,
                  secret: mc.encryptedSecret,
                },
                auths,
              );
            const got = low
              ? await withPolicySession(t, rnd, async (ps) => {
                  await policySecretEndorsement(t, ps);
                  return activate([{ kind: 'password' }, policyAuth(ps.handle)]);
                })
              : await activate(undefined);
            assert.equal(Buffer.from(got.certInfo), credential);
            // bound to the AK's name: another name fails the integrity check
            const other = makeCredential(ek.outPublic, objectName(ek.outPublic), credential, rnd);
            const activateBlob = (credentialBlob: Uint8Array, secret: Uint8Array) => () =>
              withPolicySession(t, rnd, async (ps) => {
                if (low) await policySecretEndorsement(t, ps);
                return execute(
                  t,
                  ActivateCredential,
                  { activateHandle: ak.objectHandle, keyHandle: ek.objectHandle, credentialBlob, secret },
                  low ? [{ kind: 'password' }, policyAuth(ps.handle)] : undefined,
                );
              });
            await expectRc(activateBlob(other.credentialBlob, other.encryptedSecret), RC.INTEGRITY);
            // malformed blobs, as libtpms unmarshals them: shorter than its size field, a size
            // field past any digest, an HMAC of the wrong size
            const blob = Buffer.from(mc.credentialBlob);
            const withSize = (n: number) =>
              Buffer.concat([Buffer.from([n >> 8, n & 0xff]), blob.subarray(2)]);
            for (const [bad, code] of [
              [blob.subarray(0, 10), RC.INSUFFICIENT],
              [withSize(65), RC.SIZE],
              [withSize(20), RC.INTEGRITY],
            ] as const)
              await expectRc(activateBlob(bad, mc.encryptedSecret), code);
            // the TPM's own MakeCredential round-trips too
            const tmc = await execute(t, MakeCredential, {
              handle: ek.objectHandle,
              credential,
              objectName: objectName(ak.outPublic),
            });
            assert.is(tmc.credentialBlob.length, mc.credentialBlob.length);
          } finally {
            await flush(t, ek.objectHandle);
          }
        }
      } finally {
        await flush(t, ak.objectHandle);
      }
    },
  );

  s(
    'a low-range EK refuses a password (AUTH_UNAVAILABLE) and swapped sessions (POLICY_FAIL)',
    async (ctx) => {
      const t = T(ctx);
      const ak = await primary(t, TPM_RH.ENDORSEMENT, marshalPublic(akEccP256Template()));
      const ek = await primary(t, TPM_RH.ENDORSEMENT, marshalPublic(ekEccP256Template()));
      try {
        const mc = makeCredential(ek.outPublic, objectName(ak.outPublic), rnd.bytes(32), rnd);
        const req = {
          activateHandle: ak.objectHandle,
          keyHandle: ek.objectHandle,
          credentialBlob: mc.credentialBlob,
          secret: mc.encryptedSecret,
        };
        await expectRc(() => execute(t, ActivateCredential, req), RC.AUTH_UNAVAILABLE);
        const ps = await startPolicySession(t, rnd);
        try {
          await policySecretEndorsement(t, ps);
          const err = await execute(t, ActivateCredential, req, [
            policyAuth(ps.handle),
            { kind: 'password' },
          ]).catch((e: unknown) => e);
          assert.ok(
            isRc(err, RC.POLICY_FAIL) || isRc(err, RC.AUTH_TYPE) || isRc(err, RC.AUTH_UNAVAILABLE),
            String(err),
          );
        } finally {
          await flush(t, ps.handle);
        }
      } finally {
        await flush(t, ek.objectHandle);
        await flush(t, ak.objectHandle);
      }
    },
  );

  s('EK certificates read from NV in chunks parse as DER (every runner is provisioned)', async (ctx) => {
    const t = T(ctx);
    const nv = await listHandles(t, 0x01000000);
    assert.ok(nv.includes(EK_NV.RSA2048_CERT) && nv.includes(EK_NV.ECC_P384_H3_CERT));
    const { nvPublic } = await execute(t, NV_ReadPublic, { nvIndex: EK_NV.RSA2048_CERT });
    const small = await readNv(t, EK_NV.RSA2048_CERT, 100);
    assert.is(small.length, nvPublic.dataSize);
    assert.equal(small, await readNv(t, EK_NV.RSA2048_CERT));
    assert.ok(parseEkCertificate(small).length > 500);
  });

  s(
    'an unrestricted ECDSA key under the storage primary: Create, Load, Sign with a NULL ticket',
    async (ctx) => {
      const t = T(ctx);
      const srk = await primary(t, TPM_RH.OWNER, marshalPublic(srkEccP256Template()));
      try {
        const created = await execute(t, Create, {
          parentHandle: srk.objectHandle,
          inSensitive: { userAuth: EMPTY, data: EMPTY },
          inPublic: marshalPublic(eccSigningTemplate()),
          outsideInfo: EMPTY,
          creationPCR: NO_PCRS,
        });
        const pub = parsePublic(created.outPublic);
        assert.is(pub.attributes, SIGNING_KEY_ATTRIBUTES);
        assert.is(pub.eccX?.length, 32);
        const loaded = await execute(t, Load, {
          parentHandle: srk.objectHandle,
          inPrivate: created.outPrivate,
          inPublic: created.outPublic,
        });
        assert.equal(Buffer.from(loaded.name), objectName(created.outPublic));
        try {
          const data = Buffer.from('tbsCertificate');
          const digest = createHash('sha256').update(data).digest();
          const nullTicket = { tag: TPM_ST.HASHCHECK, hierarchy: TPM_RH.NULL, digest: EMPTY };
          for (const inScheme of [
            { scheme: TPM_ALG.NULL },
            { scheme: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256 },
          ]) {
            const { signature } = await execute(t, Sign, {
              keyHandle: loaded.objectHandle,
              digest,
              inScheme,
              validation: nullTicket,
            });
            const sig = parseSignature(signature);
            assert.is(sig.sigAlg, TPM_ALG.ECDSA);
            assert.is(sig.hash, TPM_ALG.SHA256);
            if (sig.sigAlg !== TPM_ALG.ECDSA) return;
            const pad = (b: Uint8Array) => Buffer.concat([Buffer.alloc(32 - b.length), b]);
            assert.ok(
              verify(
                'sha256',
                data,
                { key: publicKeyOf(pub), dsaEncoding: 'ieee-p1363' },
                Buffer.concat([pad(sig.r), pad(sig.s)]),
              ),
              'signature verifies with node:crypto',
            );
          }
          // A digest of the wrong size for the key's scheme, and a scheme other than the key's.
          await expectRc(
            () =>
              execute(t, Sign, {
                keyHandle: loaded.objectHandle,
                digest: digest.subarray(0, 20),
                inScheme: { scheme: TPM_ALG.NULL },
                validation: nullTicket,
              }),
            RC.SIZE,
          );
          await expectRc(
            () =>
              execute(t, Sign, {
                keyHandle: loaded.objectHandle,
                digest,
                inScheme: { scheme: TPM_ALG.ECDSA, hash: TPM_ALG.SHA384 },
                validation: nullTicket,
              }),
            RC.SCHEME,
          );
        } finally {
          await flush(t, loaded.objectHandle);
        }
      } finally {
        await flush(t, srk.objectHandle);
      }
    },
  );

  s(
    'TpmSigningKey: DER signatures verify; the blob reloads after a restart; bad blobs are typed',
    async (ctx) => {
      const t = T(ctx);
      const blob = await createSigningKey(t);
      const key = new TpmSigningKey(t, blob);
      const data = Buffer.from('a TBSCertificate stands here');
      const der = await key.sign(data);
      assert.is(der[0], 0x30, 'DER SEQUENCE');
      assert.ok(verify('sha256', data, key.publicKey, der), 'verifies with node:crypto (DER)');
      const before = (await listHandles(t, 0x80000000)).length;
      await key.sign(Buffer.from('second'));
      assert.is(
        (await listHandles(t, 0x80000000)).length,
        before,
        'the loaded handle is kept, nothing leaks',
      );
      // The agent restarts: a new key object from the same stored blob signs with the same key.
      await key.close();
      assert.is((await listHandles(t, 0x80000000)).length, before - 1, 'close flushes the key');
      const again = new TpmSigningKey(t, blob);
      assert.equal(again.spki, key.spki);
      assert.ok(verify('sha256', data, again.publicKey, await again.sign(data)));
      // The TPM restarts under a running agent, and another object takes the old transient slot.
      await ctx.tpm?.reboot();
      const squatter = await primary(t, TPM_RH.OWNER, marshalPublic(srkEccP256Template()));
      try {
        const after = await again.sign(data);
        assert.ok(verify('sha256', data, again.publicKey, after), 'reloaded after the TPM restart');
      } finally {
        await again.close();
        await flush(t, squatter.objectHandle);
      }
      assert.is((await listHandles(t, 0x80000000)).length, 0, 'the squatter was not flushed by close');
      // Garbage, a truncated blob, another version, a tampered private part: typed refusals.
      await rejects(() => new TpmSigningKey(t, Buffer.from('garbage')), 'ERR_ATTESTOR_KEY_BLOB');
      await rejects(() => new TpmSigningKey(t, blob.subarray(0, blob.length - 3)), 'ERR_ATTESTOR_KEY_BLOB');
      const v2 = Buffer.from(blob);
      v2[3] = 0x32;
      await rejects(() => new TpmSigningKey(t, v2), 'ERR_ATTESTOR_KEY_BLOB');
      const tampered = Buffer.from(blob);
      tampered[20] = (tampered[20] as number) ^ 0xff; // inside TPM2_PRIVATE (integrity HMAC)
      const bad = new TpmSigningKey(t, tampered);
      await rejects(() => bad.sign(data), 'ERR_ATTESTOR_KEY_BLOB');
      await bad.close();
      assert.is((await listHandles(t, 0x80000000)).length, 0, 'nothing left loaded');
    },
  );

  s('a device SVID signed by a delegated CA whose key is in the TPM verifies with openssl', async (ctx) => {
    const t = T(ctx);
    const now = Date.now();
    const H = 3_600_000;
    const rootKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const rootDer = createRootCa({
      trustDomain: 'fleet.example',
      privateKey: rootKey,
      notBefore: now - H,
      notAfter: now + 48 * H,
      random: rnd,
    });
    const issuer = createSigner({
      certificate: rootDer,
      privateKey: rootKey,
      trustDomain: 'fleet.example',
      random: rnd,
    });
    const caKey = new TpmSigningKey(t, await createSigningKey(t));
    const dir = mkdtempSync(join(tmpdir(), 'tpm-ca-'));
    try {
      // The CA's CSR is signed in the TPM and verifies (parseCsr checks the self-signature).
      const csr = parseCsr(await createCaCsr(caKey));
      assert.equal(Buffer.from(csr.spki), caKey.spki);
      const gwId = 'spiffe://fleet.example/gateway/gw-tpm';
      const caDer = issuer.sign({
        profile: 'device-ca',
        spiffeId: gwId,
        spki: csr.spki,
        notBefore: now,
        notAfter: now + 24 * H,
      });
      const signer = createCaSigner({
        certificate: caDer,
        key: caKey,
        trustDomain: 'fleet.example',
        random: rnd,
        scope: `${gwId}/device`,
        profiles: ['svid'],
      });
      const devKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      const leaf = await signer.issue({
        profile: 'svid',
        spiffeId: `${gwId}/device/d1`,
        spki: spkiOf(devKey),
        notBefore: now,
        notAfter: now + H,
      });
      const pem = (der: Uint8Array) => new X509Certificate(Buffer.from(der)).toString();
      writeFileSync(join(dir, 'root.pem'), pem(rootDer));
      writeFileSync(join(dir, 'ca.pem'), pem(caDer));
      writeFileSync(join(dir, 'leaf.pem'), pem(leaf.der));
      const out = execFileSync('openssl', [
        'verify',
        '-CAfile',
        join(dir, 'root.pem'),
        '-untrusted',
        join(dir, 'ca.pem'),
        join(dir, 'leaf.pem'),
      ]).toString();
      assert.match(out, /leaf\.pem: OK/);
      // The same leaf with one bit of its signature flipped does not verify: openssl really checked it.
      const bad = Buffer.from(leaf.der);
      bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 1;
      writeFileSync(
        join(dir, 'bad.pem'),
        `-----BEGIN CERTIFICATE-----\n${bad.toString('base64')}\n-----END CERTIFICATE-----\n`,
      );
      let refused = false;
      try {
        execFileSync(
          'openssl',
          [
            'verify',
            '-CAfile',
            join(dir, 'root.pem'),
            '-untrusted',
            join(dir, 'ca.pem'),
            join(dir, 'bad.pem'),
          ],
          { stdio: 'pipe' },
        );
      } catch {
        refused = true;
      }
      assert.ok(refused, 'a corrupted signature is refused');
      // A key whose SPKI is not the CA certificate's is refused by the signer.
      const other = new TpmSigningKey(t, await createSigningKey(t));
      assert.throws(
        () => createCaSigner({ certificate: caDer, key: other, trustDomain: 'fleet.example', random: rnd }),
        (e: Error & { code?: string }) => e.code === 'ERR_SVID_SIGNER',
      );
      await other.close();
    } finally {
      await caKey.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  s(
    'tpm2-tools reads the key blob as the same public key; openssl verifies its signature with it',
    async (ctx) => {
      const t = T(ctx);
      const blob = await createSigningKey(t);
      const key = new TpmSigningKey(t, blob);
      const dir = mkdtempSync(join(tmpdir(), 'tpm-key-tools-'));
      try {
        const pub = parseSigningKeyBlob(blob).pub;
        const size = Buffer.alloc(2);
        size.writeUInt16BE(pub.length);
        writeFileSync(join(dir, 'key.pub'), Buffer.concat([size, pub]));
        const text = execFileSync('tpm2_print', ['-t', 'TPM2B_PUBLIC', join(dir, 'key.pub')]).toString();
        assert.match(text, /sign/);
        assert.match(text, /fixedtpm/);
        assert.match(text, /ecdsa/i);
        const pem = execFileSync('tpm2_print', [
          '-t',
          'TPM2B_PUBLIC',
          '-f',
          'pem',
          join(dir, 'key.pub'),
        ]).toString();
        writeFileSync(join(dir, 'key.pem'), pem);
        const data = Buffer.from('cross-checked by tpm2-tools and openssl');
        writeFileSync(join(dir, 'data'), data);
        writeFileSync(join(dir, 'sig.der'), await key.sign(data));
        const verify = (file: string) =>
          execFileSync(
            'openssl',
            [
              'dgst',
              '-sha256',
              '-verify',
              join(dir, 'key.pem'),
              '-signature',
              join(dir, 'sig.der'),
              join(dir, file),
            ],
            {
              stdio: 'pipe',
            },
          ).toString();
        assert.match(verify('data'), /Verified OK/);
        writeFileSync(join(dir, 'other'), Buffer.from('not what was signed'));
        assert.throws(() => verify('other'));
      } finally {
        await key.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  s(
    'keys left loaded by killed processes never fill the TPM: the next load adopts or flushes them',
    async (ctx) => {
      const t = T(ctx);
      const data = Buffer.from('tbs');
      const blobs = [await createSigningKey(t), await createSigningKey(t)];
      // Two "processes" load a CA key each and are killed (no close): with the storage primary a
      // load needs, the TPM's three object slots are then full.
      for (const [i, blob] of blobs.entries()) {
        await new TpmSigningKey(t, blob).sign(data);
        assert.is((await listHandles(t, 0x80000000)).length, i + 1);
      }
      // The next process's load finds no slot: it adopts its own key's copy and flushes the other.
      const next = new TpmSigningKey(t, blobs[0] as Buffer);
      assert.ok(verify('sha256', data, next.publicKey, await next.sign(data)));
      assert.is((await listHandles(t, 0x80000000)).length, 1, 'adopted, the other leftover flushed');
      const other = new TpmSigningKey(t, blobs[1] as Buffer);
      assert.ok(verify('sha256', data, other.publicKey, await other.sign(data)));
      assert.ok(verify('sha256', data, next.publicKey, await next.sign(data)));
      await next.close();
      await other.close();
      assert.is((await listHandles(t, 0x80000000)).length, 0, 'nothing left loaded');
    },
  );

  s('a reboot returns PCRs to zero and forgets transient objects', async (ctx) => {
    const t = T(ctx);
    await execute(t, PCR_Extend, {
      pcrHandle: 0,
      digests: [{ hash: TPM_ALG.SHA256, digest: Buffer.alloc(32, 9) }],
    });
    const k = await primary(t, TPM_RH.OWNER, marshalPublic(srkEccP256Template()));
    await ctx.tpm?.reboot();
    assert.equal((await readPcrs(t, parsePcrSelection('sha256:0')))[0], Buffer.alloc(32));
    // TPM_RC_REFERENCE_H0: the handle names a transient object that is no longer loaded
    await expectRc(() => execute(t, ReadPublic, { objectHandle: k.objectHandle }), RC.REFERENCE_H0);
  });

  s.run();
}
