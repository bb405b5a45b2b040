/**
 * Property test: whatever bytes arrive, `send()` resolves to one well-formed response, a handler
 * never crashes (no internal error logged, no TPM_RC_FAILURE), and the simulator keeps answering.
 */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TPM_CC } from '../../../attestors/tpm/wire/constants.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { openSim } from './harness.ts';
import { getCapability, response } from './wire.ts';

test('random command bodies for every implemented command give a response, never a crash', async () => {
  const logger = new MemoryLogger();
  const sim = await openSim({ ekTypes: ['ecc'], logger });
  try {
    const codes = Object.values(TPM_CC);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...codes),
        fc.boolean(),
        fc.uint8Array({ maxLength: 160 }),
        async (cc, sessions, body) => {
          const cmd = Buffer.alloc(10 + body.length);
          cmd.writeUInt16BE(sessions ? 0x8002 : 0x8001, 0);
          cmd.writeUInt32BE(cmd.length, 2);
          cmd.writeUInt32BE(cc, 6);
          cmd.set(body, 10);
          const r = response(await sim.tpm.send(cmd));
          assert.ok(r.rc !== 0x101 || cc === TPM_CC.ActivateCredential, `0x101 for 0x${cc.toString(16)}`);
        },
      ),
      { numRuns: 1500, seed: 42 },
    );
    assert.equal(
      logger.lines.filter((l) => l.level === 'error'),
      [],
    );
    assert.is((await sim.run(getCapability(6, 0x105, 1))).rc, 0, 'still answering');
  } finally {
    await sim.cleanup();
  }
});

test.run();
