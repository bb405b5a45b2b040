/**
 * Cross-checks with the real tpm2-tools 5.4 against swtpm: the shared checks (tpm2-tools-suite.ts:
 * quote verified by `tpm2_checkquote`, `tpm info` and `tpm ek`); here also a credential made by
 * `tpm2_makecredential --tcti none` activated by our client (RSA L-1 EK with PolicySecret, ECC H-3
 * EK with password).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { activateCredential } from '../../../attestors/tpm/activate.ts';
import { findEks } from '../../../attestors/tpm/ek.ts';
import { withAk } from '../../../attestors/tpm/quote.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import { Reader, Writer } from '../../../attestors/tpm/wire/buffer.ts';
import { seededRandom } from '../../../sim/random.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { run, tpm2ToolsSuite } from './tpm2-tools-suite.ts';

const swtpm = await launchSwtpm();
const dir = await mkdtemp(join(tmpdir(), 'edgeward-tpm2tools-'));
const random = seededRandom('tpm2-tools');

const s = tpm2ToolsSuite('swtpm', {
  spec: swtpm.spec,
  dir,
  manufacturer: 'IBM',
  eks: ['L-1 RSA-2048', 'H-3 ECC P-384'],
  ca: { root: swtpm.root, intermediate: swtpm.intermediate },
  async close() {
    await swtpm.stop();
    await rm(dir, { recursive: true, force: true });
  },
});

s(
  'a credential from tpm2_makecredential --tcti none is activated by our client (RSA and ECC EKs)',
  async () => {
    const t = await openTransport(swtpm.spec);
    try {
      const eks = await findEks(t, ['L-1', 'H-3']);
      // Both certified EKs, or the loop below would prove nothing for the missing one.
      assert.equal(
        eks.map((e) => e.template),
        ['L-1', 'H-3'],
      );
      let activated = 0;
      for (const ek of eks) {
        await withAk(t, async (ak) => {
          const pubFile = join(dir, `ek-${ek.template}.tss`);
          await writeFile(pubFile, new Writer().tpm2b(ek.public).finish());
          const secret = random.bytes(32);
          await writeFile(join(dir, 'secret.bin'), secret);
          const out = join(dir, `mc-${ek.template}.out`);
          await run('tpm2_makecredential', [
            '--tcti',
            'none',
            '-u',
            pubFile,
            '-s',
            join(dir, 'secret.bin'),
            '-n',
            ak.name.toString('hex'),
            '-o',
            out,
          ]);
          const r = new Reader(await readFile(out), 'tpm2_makecredential output');
          assert.is(r.u32('magic'), 0xbadcc0de);
          assert.is(r.u32('version'), 1);
          const blob = r.tpm2b('credentialBlob');
          const enc = r.tpm2b('secret');
          r.done();
          const got = await activateCredential(t, ek, ak, blob, enc, random);
          assert.equal(got, secret, `activated with EK ${ek.template}`);
          activated++;
        });
      }
      assert.is(activated, 2, 'a credential activated with each EK');
    } finally {
      await t.close();
    }
  },
);

s.run();
