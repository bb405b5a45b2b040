/**
 * The TPM attestor's suite, run against swtpm (attestor.swtpm.test.ts) and the TypeScript simulator
 * (test/sim/tpm/attestor.sim.test.ts), which differ only in the TPM they open: the attestor
 * conformance suite with each certified EK, the EK chain to the TPM's manufacturer CA, PCR-sealed
 * keys across reboots (sealed to the current or to expected values), the same AK across reboots,
 * and nothing left loaded.
 *
 * @example
 * ```ts
 * const s = tpmAttestorSuite('swtpm', { transport, ca, eks: ['L-1', 'H-3'], reboot, close }, random);
 * s('something only swtpm does', async () => { ... });
 * s.run();
 * ```
 */
import { createHash, type X509Certificate } from 'node:crypto';
import { suite, type Test } from 'uvu';
import * as assert from 'uvu/assert';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { execute } from '../../../attestors/tpm/client/execute.ts';
import { listHandles } from '../../../attestors/tpm/client/helpers.ts';
import { PCR_Extend } from '../../../attestors/tpm/commands/pcr.ts';
import type { TpmTransport } from '../../../attestors/tpm/transport/transport.ts';
import type { EkTemplateName } from '../../../attestors/tpm/verify/ek-public.ts';
import { qualifyingData, verifyQuote } from '../../../attestors/tpm/verify/index.ts';
import { TPM_ALG } from '../../../attestors/tpm/wire/constants.ts';
import type { Random } from '../../../runtime/core/random.ts';
import { attestorConformance } from '../../conformance/attestor.ts';
import { rejects } from '../../helpers/rejects.ts';
import { tpmChallenge, tpmCheck } from './tpm-issuer-role.ts';

export interface AttestorTpm {
  readonly transport: TpmTransport;
  /** The manufacturer CA its EK certificates chain to. */
  readonly ca: { readonly root: X509Certificate; readonly intermediate: X509Certificate };
  /** The certified EKs it holds, each at a persistent handle. */
  readonly eks: readonly EkTemplateName[];
  /** An orderly power cycle: PCRs back to zero, transient objects gone. */
  reboot(): Promise<void>;
  close(): Promise<void>;
}

/** Registers the conformance runs and returns the attestor suite (add tests, then `run()` it). */
export function tpmAttestorSuite(name: string, tpm: AttestorTpm, random: Random): Test {
  const { transport, ca } = tpm;
  const attestor = (ekPreference?: readonly EkTemplateName[]) =>
    new TpmAttestor({ transport, random, ownsTransport: false, ...(ekPreference ? { ekPreference } : {}) });

  // No EK would register no conformance run at all, silently.
  assert.ok(tpm.eks.length > 0, 'the runner names the certified EKs it provisioned');
  for (const ek of tpm.eks) {
    attestorConformance(`tpm (${ek} EK) on ${name}`, async () => ({
      attestor: attestor([ek]),
      challenge: (begin) => tpmChallenge(begin, random, ca),
      check: tpmCheck,
      checkQuote(begin, nonce, key, selection, ev) {
        if (begin.method !== 'tpm') return assert.unreachable('not tpm');
        verifyQuote({ akPublic: begin.akPublic, nonce: qualifyingData(nonce, key), selection, ...ev });
      },
      refusals: { otherCsrKey: 'ERR_ATTEST_QUOTE_INVALID', otherNonce: 'ERR_ATTEST_QUOTE_INVALID' },
      cleanup: async () => {},
    }));
  }

  const s = suite(`TPM attestor on ${name}`);
  s.after(() => tpm.close());

  s('presents each certified EK; its chain verifies to the manufacturer CA', async () => {
    assert.ok(tpm.eks.length > 0);
    for (const ek of tpm.eks) {
      const a = attestor([ek]);
      await a.start();
      assert.is(a.ek?.template, ek);
      assert.ok(a.ek?.persistentHandle !== undefined, 'EK persisted at provisioning');
      tpmChallenge(await a.begin(), random, ca); // throws unless chain + template + AK check out
      await a.close();
    }
  });

  s('leaves no transient object or session loaded', async () => {
    const a = attestor();
    await a.start();
    const begin = await a.begin();
    await a.answer(tpmChallenge(begin, random, ca), Buffer.from('spki'));
    await a.unseal(await a.seal(Buffer.alloc(32, 1), { pcrs: [7] }));
    assert.equal(await listHandles(transport, 0x80000000), []);
    assert.equal(await listHandles(transport, 0x03000000), []);
    assert.equal(await listHandles(transport, 0x02000000), []);
    await a.close();
  });

  s('a key sealed to PCRs 0,7 unseals after a reboot, not after PCR 0 changed', async () => {
    const a = attestor();
    await a.start();
    await tpm.reboot();
    const key = random.bytes(32);
    const blob = await a.seal(key, { pcrs: [0, 7] });
    await tpm.reboot();
    assert.equal(Buffer.from(await a.unseal(blob)), key);
    await execute(transport, PCR_Extend, {
      pcrHandle: 0,
      digests: [{ hash: TPM_ALG.SHA256, digest: Buffer.alloc(32, 3) }],
    });
    await rejects(() => a.unseal(blob), 'ERR_ATTESTOR_PCR_POLICY');
    await tpm.reboot();
    assert.equal(Buffer.from(await a.unseal(blob)), key);
    await a.close();
  });

  s(
    'a key sealed to expected PCR values opens only once the PCRs hold them (an update sealing ahead)',
    async () => {
      const a = attestor();
      await a.start();
      await tpm.reboot();
      const measurement = Buffer.alloc(32, 9);
      const promised = createHash('sha256').update(Buffer.alloc(32)).update(measurement).digest();
      const key = random.bytes(32);
      const blob = await a.seal(key, { pcrs: [0], expected: { 0: promised } });
      await rejects(() => a.unseal(blob), 'ERR_ATTESTOR_PCR_POLICY'); // PCR 0 still holds its reset value
      await execute(transport, PCR_Extend, {
        pcrHandle: 0,
        digests: [{ hash: TPM_ALG.SHA256, digest: measurement }],
      });
      assert.equal(Buffer.from(await a.unseal(blob)), key);
      await tpm.reboot();
      await rejects(() => a.seal(key, { pcrs: [0, 7], expected: { 0: promised } }), 'ERR_ATTESTOR_INPUT');
      await rejects(() => a.seal(key, { pcrs: [24] }), 'ERR_ATTESTOR_INPUT');
      await a.close();
    },
  );

  s('renewal quotes come from the same AK across reboots', async () => {
    const a = attestor();
    await a.start();
    const before = await a.begin();
    await tpm.reboot();
    const after = await a.begin();
    assert.equal(before.method === 'tpm' && before.akPublic, after.method === 'tpm' && after.akPublic);
    await a.close();
  });

  s('a challenge without a credential is refused with ERR_ATTEST_CREDENTIAL', async () => {
    const a = attestor();
    await a.start();
    await rejects(
      () => a.answer({ sessionId: 'x', nonce: Buffer.alloc(32), expiresAt: 0 }, Buffer.alloc(4)),
      'ERR_ATTEST_CREDENTIAL',
    );
    await a.close();
  });

  return s;
}
