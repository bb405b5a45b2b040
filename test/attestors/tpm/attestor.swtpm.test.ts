/**
 * The TPM attestor against a real swtpm: the conformance suite with the RSA (L-1, PolicySecret) and
 * the ECC (H-3, password) EK, the EK chain to swtpm's local CA, PCR-sealed keys across a reboot,
 * and the flush discipline (no transient object or session left behind).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { execute } from '../../../attestors/tpm/client/execute.ts';
import { listHandles } from '../../../attestors/tpm/client/helpers.ts';
import { PCR_Extend } from '../../../attestors/tpm/commands/pcr.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import { qualifyingData, verifyQuote } from '../../../attestors/tpm/verify/index.ts';
import { TPM_ALG } from '../../../attestors/tpm/wire/constants.ts';
import { seededRandom } from '../../../sim/random.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { attestorConformance } from '../../conformance/attestor.ts';
import { rejects } from '../../helpers/rejects.ts';
import { tpmChallenge, tpmCheck } from './tpm-issuer-role.ts';

const swtpm = await launchSwtpm();
const transport = await openTransport(swtpm.spec);
const random = seededRandom('attestor-swtpm');
const ca = { root: swtpm.root, intermediate: swtpm.intermediate };

for (const ek of ['L-1', 'H-3'] as const) {
  attestorConformance(`tpm (${ek} EK) on swtpm`, async () => ({
    attestor: new TpmAttestor({ transport, random, ekPreference: [ek], ownsTransport: false }),
    challenge: (begin) => tpmChallenge(begin, random, ca),
    check: tpmCheck,
    checkQuote(begin, nonce, key, selection, ev) {
      if (begin.method !== 'tpm') throw new Error('not tpm');
      verifyQuote({ akPublic: begin.akPublic, nonce: qualifyingData(nonce, key), selection, ...ev });
    },
    cleanup: async () => {},
  }));
}

const s = suite('TPM attestor on swtpm');
s.after(async () => {
  await swtpm.stop(transport);
  await transport.close();
});

s('presents the certified EK of its preference; the chain verifies to the swtpm local CA', async () => {
  for (const [pref, template] of [
    [['L-2', 'L-1'], 'L-1'],
    [['H-3'], 'H-3'],
  ] as const) {
    const a = new TpmAttestor({ transport, random, ekPreference: pref, ownsTransport: false });
    await a.start();
    assert.is(a.ek?.template, template);
    assert.ok(a.ek?.persistentHandle !== undefined, 'swtpm_setup persisted the EK');
    const begin = await a.begin();
    tpmChallenge(begin, random, ca); // throws unless chain + template + AK check out
    await a.close();
  }
});

s('leaves no transient object or session loaded', async () => {
  const a = new TpmAttestor({ transport, random, ownsTransport: false });
  await a.start();
  const begin = await a.begin();
  await a.answer(tpmChallenge(begin, random, ca), Buffer.from('spki'));
  await a.unseal(await a.seal(Buffer.alloc(32, 1), { pcrs: [7] }));
  assert.equal(await listHandles(transport, 0x80000000), []);
  assert.equal(await listHandles(transport, 0x03000000), []);
  assert.equal(await listHandles(transport, 0x02000000), []);
  await a.close();
});

s('a key sealed to PCR 0 unseals after a clean reboot, not after the PCR changed', async () => {
  const a = new TpmAttestor({ transport, random, ownsTransport: false });
  await a.start();
  await swtpm.reboot(transport);
  const key = random.bytes(32);
  const blob = await a.seal(key, { pcrs: [0, 7] });
  await swtpm.reboot(transport);
  assert.equal(Buffer.from(await a.unseal(blob)), key);
  await execute(transport, PCR_Extend, {
    pcrHandle: 0,
    digests: [{ hash: TPM_ALG.SHA256, digest: Buffer.alloc(32, 3) }],
  });
  await rejects(() => a.unseal(blob), 'ERR_ATTESTOR_PCR_POLICY');
  await swtpm.reboot(transport);
  assert.equal(Buffer.from(await a.unseal(blob)), key);
  await a.close();
});

s('renewal quotes come from the same AK across reboots', async () => {
  const a = new TpmAttestor({ transport, random, ownsTransport: false });
  await a.start();
  const before = await a.begin();
  await swtpm.reboot(transport);
  const after = await a.begin();
  assert.equal(before.method === 'tpm' && before.akPublic, after.method === 'tpm' && after.akPublic);
  await a.close();
});

s('a challenge without a credential is refused with ERR_ATTEST_CREDENTIAL', async () => {
  const a = new TpmAttestor({ transport, random, ownsTransport: false });
  await a.start();
  await rejects(
    () => a.answer({ sessionId: 'x', nonce: Buffer.alloc(32), expiresAt: 0 }, Buffer.alloc(4)),
    'ERR_ATTEST_CREDENTIAL',
  );
  await a.close();
});

s.run();
