/**
 * The TPM attestor (attestors/tpm) against the TypeScript simulator: the attestor conformance
 * suite with each of the simulator's certified EKs (RSA L-1 and ECC L-2 with PolicySecret, ECC
 * H-3 with a password), the EK chain to the simulator's manufacturer CA, PCR-sealed keys across
 * power cycles, and nothing left loaded.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { execute } from '../../../attestors/tpm/client/execute.ts';
import { listHandles } from '../../../attestors/tpm/client/helpers.ts';
import { PCR_Extend } from '../../../attestors/tpm/commands/pcr.ts';
import { qualifyingData, verifyQuote } from '../../../attestors/tpm/verify/index.ts';
import { TPM_ALG, TPM_CC } from '../../../attestors/tpm/wire/constants.ts';
import { seededRandom } from '../../../sim/random.ts';
import { tpmChallenge, tpmCheck } from '../../attestors/tpm/tpm-issuer-role.ts';
import { attestorConformance } from '../../conformance/attestor.ts';
import { rejects } from '../../helpers/rejects.ts';
import { openSim } from './harness.ts';

const sim = await openSim({ random: seededRandom('attestor-sim') });
const transport = sim.tpm;
const random = seededRandom('attestor-sim-issuer');
const ca = {
  root: new X509Certificate(readFileSync(sim.tpm.manufacturerCaPaths.root)),
  intermediate: new X509Certificate(readFileSync(sim.tpm.manufacturerCaPaths.intermediate)),
};

for (const ek of ['L-1', 'L-2', 'H-3'] as const) {
  attestorConformance(`tpm (${ek} EK) on the simulator`, async () => ({
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

const s = suite('TPM attestor on the simulator');
s.after(async () => sim.cleanup());

s(
  'presents each certified EK; its chain verifies to the manufacturer CA written beside the state',
  async () => {
    for (const ek of ['L-1', 'L-2', 'H-3'] as const) {
      const a = new TpmAttestor({ transport, random, ekPreference: [ek], ownsTransport: false });
      await a.start();
      assert.is(a.ek?.template, ek);
      assert.ok(a.ek?.persistentHandle !== undefined, 'EK persisted at provisioning');
      tpmChallenge(await a.begin(), random, ca);
      await a.close();
    }
  },
);

s('an issuer trusting another simulator state CA refuses this EK', async () => {
  const other = await openSim({ ekTypes: ['ecc'] });
  const otherCa = {
    root: new X509Certificate(readFileSync(other.tpm.manufacturerCaPaths.root)),
    intermediate: new X509Certificate(readFileSync(other.tpm.manufacturerCaPaths.intermediate)),
  };
  await other.cleanup();
  assert.not.equal(otherCa.root.raw, ca.root.raw);
  const a = new TpmAttestor({ transport, random, ownsTransport: false });
  await a.start();
  const begin = await a.begin();
  let threw = false;
  try {
    tpmChallenge(begin, random, otherCa);
  } catch {
    threw = true;
  }
  assert.ok(threw, 'chain to a foreign manufacturer CA must fail');
  await a.close();
});

s('start reads the certificate of the EK it presents only, not those of the others', async () => {
  const sent: number[] = [];
  const recording = {
    send: (c: Uint8Array) => {
      sent.push(Buffer.from(c).readUInt32BE(6));
      return transport.send(c);
    },
    close: async () => {},
  };
  const a = new TpmAttestor({ transport: recording, random, ekPreference: ['L-1', 'L-2', 'H-3'] });
  await a.start();
  assert.is(a.ek?.template, 'L-1');
  assert.is(sent.filter((cc) => cc === TPM_CC.NV_ReadPublic).length, 1);
  assert.not.ok(sent.includes(TPM_CC.CreatePrimary), 'no other EK recreated');
  await a.close();
});

s('leaves no transient object or session loaded', async () => {
  const a = new TpmAttestor({ transport, random, ownsTransport: false });
  await a.start();
  const begin = await a.begin();
  await a.answer(tpmChallenge(begin, random, ca), Buffer.from('spki'));
  await a.unseal(await a.seal(Buffer.alloc(32, 1), { pcrs: [7] }));
  assert.equal(await listHandles(transport, 0x80000000), []);
  assert.equal(await listHandles(transport, 0x03000000), []);
  await a.close();
});

s('a key sealed to PCRs 0,7 unseals after a reboot, not after PCR 0 changed', async () => {
  const a = new TpmAttestor({ transport, random, ownsTransport: false });
  await a.start();
  const key = random.bytes(32);
  const blob = await a.seal(key, { pcrs: [0, 7] });
  await transport.reset({ orderly: true });
  assert.equal(Buffer.from(await a.unseal(blob)), key);
  await execute(transport, PCR_Extend, {
    pcrHandle: 0,
    digests: [{ hash: TPM_ALG.SHA256, digest: Buffer.alloc(32, 3) }],
  });
  await rejects(() => a.unseal(blob), 'ERR_ATTESTOR_PCR_POLICY');
  await transport.reset();
  assert.equal(Buffer.from(await a.unseal(blob)), key);
  await a.close();
});

s('the same AK (same template, same seed) across power cycles and a process restart', async () => {
  const a = new TpmAttestor({ transport, random, ownsTransport: false });
  await a.start();
  const before = await a.begin();
  await transport.reset();
  const after = await a.begin();
  assert.equal(before.method === 'tpm' && before.akPublic, after.method === 'tpm' && after.akPublic);
  await a.close();
});

s.run();
