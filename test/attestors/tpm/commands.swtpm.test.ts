/** The command suite against a real swtpm 0.7 (Unix sockets), provisioned by swtpm_setup. */
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { commandSuite } from './suite.ts';

commandSuite('swtpm', async () => {
  const swtpm = await launchSwtpm();
  const transport = await openTransport(swtpm.spec);
  return {
    transport,
    reboot: () => swtpm.reboot(transport),
    async close() {
      await swtpm.stop(transport);
      await transport.close();
    },
  };
});
