/** swtpm over TCP (data port P, control port P+1): an attestation round, a reboot, a clean stop. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { execute } from '../../../attestors/tpm/client/execute.ts';
import { readPcrs } from '../../../attestors/tpm/client/helpers.ts';
import { PCR_Extend } from '../../../attestors/tpm/commands/pcr.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import { TPM_ALG } from '../../../attestors/tpm/wire/constants.ts';
import { parsePcrSelection } from '../../../attestors/tpm/wire/pcr-selection.ts';
import { seededRandom } from '../../../sim/random.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { tpmChallenge, tpmCheck } from './tpm-issuer-role.ts';

test('attestation and reboot over swtpm TCP', async () => {
  const swtpm = await launchSwtpm({ tcp: true });
  const t = await openTransport(swtpm.spec);
  try {
    assert.match(swtpm.spec, /^swtpm:host=127\.0\.0\.1,port=\d+$/);
    const random = seededRandom('tcp');
    const a = new TpmAttestor({ transport: t, random, ownsTransport: false });
    await a.start();
    const begin = await a.begin();
    const challenge = tpmChallenge(begin, random, { root: swtpm.root, intermediate: swtpm.intermediate });
    const spki = Buffer.from('tcp-spki');
    tpmCheck(begin, challenge, await a.answer(challenge, spki), spki);
    await a.close();
    await execute(t, PCR_Extend, {
      pcrHandle: 0,
      digests: [{ hash: TPM_ALG.SHA256, digest: Buffer.alloc(32, 1) }],
    });
    await swtpm.reboot(t);
    assert.equal((await readPcrs(t, parsePcrSelection('sha256:0')))[0], Buffer.alloc(32));
  } finally {
    await swtpm.stop(t);
    await t.close();
  }
});

test.run();
