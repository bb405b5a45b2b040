/** The TPM client's command suite (test/attestors/tpm/suite.ts) against the TypeScript simulator. */
import { commandSuite } from '../../attestors/tpm/suite.ts';
import { openSim } from './harness.ts';

commandSuite('sim', async () => {
  const sim = await openSim();
  return {
    transport: sim.tpm,
    reboot: () => sim.tpm.reset({ orderly: true }),
    close: () => sim.cleanup(),
  };
});
