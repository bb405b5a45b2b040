/**
 * The TPM attestor against a real swtpm: the shared attestor suite (attestor-suite.ts) with the RSA
 * (L-1, PolicySecret) and the ECC (H-3, password) EK, the EK chain to swtpm's local CA; here also
 * the EK preference falling through to the EKs swtpm_setup certified.
 */
import * as assert from 'uvu/assert';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import { seededRandom } from '../../../sim/random.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { tpmAttestorSuite } from './attestor-suite.ts';
import { tpmChallenge } from './tpm-issuer-role.ts';

const swtpm = await launchSwtpm();
const transport = await openTransport(swtpm.spec);
const random = seededRandom('attestor-swtpm');
const ca = { root: swtpm.root, intermediate: swtpm.intermediate };

const s = tpmAttestorSuite(
  'swtpm',
  {
    transport,
    ca,
    eks: ['L-1', 'H-3'],
    reboot: () => swtpm.reboot(transport),
    async close() {
      await swtpm.stop(transport);
      await transport.close();
    },
  },
  random,
);

s('an EK preference skips the EKs swtpm_setup did not certify (no L-2)', async () => {
  const a = new TpmAttestor({ transport, random, ekPreference: ['L-2', 'L-1'], ownsTransport: false });
  await a.start();
  assert.is(a.ek?.template, 'L-1');
  tpmChallenge(await a.begin(), random, ca);
  await a.close();
});

s.run();
