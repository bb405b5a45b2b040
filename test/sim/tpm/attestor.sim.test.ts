/**
 * The TPM attestor (attestors/tpm) against the TypeScript simulator: the shared attestor suite
 * (test/attestors/tpm/attestor-suite.ts) with each of the simulator's certified EKs (RSA L-1 and
 * ECC L-2 with PolicySecret, ECC H-3 with a password) and the manufacturer CA written beside the
 * state; here also a foreign simulator's CA refusing this EK, and start reading one EK only.
 */
import * as assert from 'uvu/assert';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { TPM_CC } from '../../../attestors/tpm/wire/constants.ts';
import { seededRandom } from '../../../sim/random.ts';
import { tpmAttestorSuite } from '../../attestors/tpm/attestor-suite.ts';
import { tpmChallenge } from '../../attestors/tpm/tpm-issuer-role.ts';
import { rejects } from '../../helpers/rejects.ts';
import { openSim } from './harness.ts';

const sim = await openSim({ random: seededRandom('attestor-sim') });
const transport = sim.tpm;
const random = seededRandom('attestor-sim-issuer');

const s = tpmAttestorSuite(
  'the simulator',
  {
    transport,
    ca: transport.manufacturerCa(),
    eks: ['L-1', 'L-2', 'H-3'],
    reboot: () => transport.reset({ orderly: true }),
    close: () => sim.cleanup(),
  },
  random,
);

s('an issuer trusting another simulator state CA refuses this EK', async () => {
  const other = await openSim({ ekTypes: ['ecc'] });
  const otherCa = other.tpm.manufacturerCa();
  await other.cleanup();
  const a = new TpmAttestor({ transport, random, ownsTransport: false });
  await a.start();
  const begin = await a.begin();
  await rejects(() => tpmChallenge(begin, random, otherCa), 'ERR_ATTEST_EK_CHAIN');
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

s.run();
