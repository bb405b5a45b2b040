/**
 * Recovery of a tpm gateway by its delegated CA key (`/v1/recover/*`), on a real swtpm and on
 * the TypeScript simulator: the PCR policy is never bypassed — finish needs a fresh quote by the
 * gateway's registered AK over SHA-256(nonce ‖ CSR SPKI), checked against the signed firmware
 * reference values exactly as renewal does. Missing quote, a quote bound to another key and PCR
 * drift are each refused with their code.
 */
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AttestProof } from '../../../attestors/attestor.ts';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { execute } from '../../../attestors/tpm/client/execute.ts';
import { PCR_Extend } from '../../../attestors/tpm/commands/pcr.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import type { TpmTransport } from '../../../attestors/tpm/transport/transport.ts';
import { TPM_ALG } from '../../../attestors/tpm/wire/constants.ts';
import { signManifest } from '../../../runtime/firmware/manifest.ts';
import { Issuer } from '../../../runtime/issuer/issuer.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { parseCsr } from '../../../runtime/svid/csr.ts';
import { caPopSignedData } from '../../../runtime/svid/pop.ts';
import type { IssuedIdentity, RecoverBeginResponse } from '../../../runtime/upstream/protocol.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { openSimTransport } from '../../../sim/tpm/index.ts';
import { rejects } from '../../helpers/rejects.ts';
import { keyAndCsr, TD } from './harness.ts';

const SEL = 'sha256:0,1,2,7';
const HOUR = 3_600_000;
const ctx = { address: '192.0.2.7' };

interface Backend {
  transport: TpmTransport;
  roots: import('node:crypto').X509Certificate[];
  intermediates: import('node:crypto').X509Certificate[];
  stop(): Promise<void>;
}

async function swtpmBackend(): Promise<Backend> {
  const tpm = await launchSwtpm();
  const transport = await openTransport(tpm.spec);
  return {
    transport,
    roots: [tpm.root],
    intermediates: [tpm.intermediate],
    stop: async () => {
      await tpm.stop(transport);
      await transport.close();
    },
  };
}

async function simBackend(): Promise<Backend> {
  const dir = mkdtempSync(join(tmpdir(), 'recover-tpm-sim-'));
  const transport = await openSimTransport(join(dir, 'tpm'));
  const ca = transport.manufacturerCa();
  return {
    transport,
    roots: [ca.root],
    intermediates: [ca.intermediate],
    stop: async () => {
      await transport.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

for (const kind of ['swtpm', 'sim'] as const) {
  test(`${kind}: a tpm gateway recovers only with a fresh quote by its AK that matches the PCR policy`, async () => {
    const backend = kind === 'swtpm' ? await swtpmBackend() : await simBackend();
    const random = seededRandom(`recover-tpm-${kind}`);
    const clock = new VirtualClock(Date.now());
    const rootKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const fwKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const issuer = await Issuer.create({
      trustDomain: TD,
      store: await openMemoryStore(),
      ca: {
        certificate: createRootCa({
          trustDomain: TD,
          privateKey: rootKey,
          notBefore: clock.now() - 1000,
          notAfter: clock.now() + 86_400_000 * 60,
          random,
        }),
        privateKey: rootKey,
      },
      clock,
      random,
      methods: {
        tpm: {
          manufacturerRoots: backend.roots,
          intermediates: backend.intermediates,
          pcrSelection: SEL,
          autoRegister: true,
          pcrPolicy: 'manifests',
        },
      },
      firmwareKeys: [fwKey],
    });
    const a = new TpmAttestor({
      transport: backend.transport,
      random,
      ekPreference: ['H-3'],
      ownsTransport: false,
    });
    await a.start();
    try {
      const attest = async () => {
        const begin = await issuer.attestBegin(await a.begin(), ctx);
        const k = keyAndCsr();
        const ca = keyAndCsr();
        const proof = (await a.answer(begin, parseCsr(k.csr).spki)) as AttestProof & { method: 'tpm' };
        return {
          body: { ...proof, sessionId: begin.sessionId, csr: k.csr, caCsr: ca.csr },
          proof,
          caKey: ca.key,
        };
      };
      const probe = await attest();
      const pcrs: Record<number, string> = {};
      [0, 1, 2, 7].forEach((p, i) => {
        pcrs[p] = Buffer.from(probe.proof.pcrValues[i] as Uint8Array).toString('hex');
      });
      await issuer.addManifest(
        { manifest: signManifest({ version: 'fw-1.0', bank: 'sha256', pcrs }, fwKey, clock.now()) },
        ctx,
      );
      const ok = await attest();
      const id = (await issuer.attestFinish(ok.body, ctx)) as IssuedIdentity;
      const ca = id.deviceCaChain[0] as Uint8Array;
      await clock.advance(2 * HOUR); // the SVID has expired; the delegated CA has not

      const begin = async (): Promise<RecoverBeginResponse> => {
        const b = await issuer.recoverBegin({ caChain: [ca] }, ctx);
        assert.is(b.pcrSelection, SEL);
        return b;
      };
      const proof = (b: RecoverBeginResponse, caKey: KeyObject = ok.caKey) => {
        const k = keyAndCsr();
        const spki = parseCsr(k.csr).spki;
        return {
          spki,
          body: {
            sessionId: b.sessionId,
            csr: k.csr,
            caSignature: sign('sha256', caPopSignedData(b.nonce, spki), { key: caKey, dsaEncoding: 'der' }),
          },
        };
      };

      // No quote: refused, however good the CA proof.
      const b1 = await begin();
      await rejects(() => issuer.recoverFinish(proof(b1).body, ctx), 'ERR_ISSUER_QUOTE_INVALID');

      // A quote bound to another key than the CSR's.
      const b2 = await begin();
      const p2 = proof(b2);
      const q2 = await a.quote(b2.nonce, parseCsr(keyAndCsr().csr).spki, SEL);
      await rejects(() => issuer.recoverFinish({ ...p2.body, ...q2 }, ctx), 'ERR_ATTEST_QUOTE_INVALID');

      // The good case: CA proof + fresh quote by the registered AK over nonce and CSR key.
      const b4 = await begin();
      const p4 = proof(b4);
      const q4 = await a.quote(b4.nonce, p4.spki, SEL);
      const recovered = await issuer.recoverFinish({ ...p4.body, ...q4 }, ctx);
      assert.is(recovered.spiffeId, id.spiffeId);
      // The same finish again: the same answer (a lost answer); another request on it: a replay.
      const again = await issuer.recoverFinish({ ...p4.body, ...q4 }, ctx);
      assert.equal(
        Buffer.from(again.svidChain[0] as Uint8Array),
        Buffer.from(recovered.svidChain[0] as Uint8Array),
      );
      await rejects(
        () => issuer.recoverFinish({ ...p4.body, ...q4, caCsr: keyAndCsr().csr }, ctx),
        'ERR_ISSUER_SESSION_UNKNOWN',
      );

      // PCR drift (another firmware measured): refused as renewal refuses it.
      await execute(backend.transport, PCR_Extend, {
        pcrHandle: 7,
        digests: [{ hash: TPM_ALG.SHA256, digest: Buffer.alloc(32, 9) }],
      });
      const b5 = await begin();
      const p5 = proof(b5);
      const q5 = await a.quote(b5.nonce, p5.spki, SEL);
      await rejects(() => issuer.recoverFinish({ ...p5.body, ...q5 }, ctx), 'ERR_ISSUER_PCR_MISMATCH');

      const events = await issuer.auditEvents();
      assert.ok(
        events.some((e) => e.event === 'recover' && e.method === 'tpm' && e.detail === 'firmware fw-1.0'),
      );
      for (const code of ['ERR_ISSUER_QUOTE_INVALID', 'ERR_ATTEST_QUOTE_INVALID', 'ERR_ISSUER_PCR_MISMATCH'])
        assert.ok(
          events.some((e) => e.event === 'refuse' && e.code === code && e.detail === 'recover.finish'),
          code,
        );
    } finally {
      await a.close();
      await issuer.close();
      await backend.stop();
    }
  });
}

test.run();
