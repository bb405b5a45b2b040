/** `edgeward agent`: reserved until the agent lands; `--dev` prints what it will do. */
import { type Command, parseFlags, UsageError } from '../command.ts';

export const command: Command = {
  name: 'agent',
  summary: '',
  help: `Usage: edgeward agent (--config FILE | --dev)

  --config FILE   run with the agent config FILE
  --dev           run on the embedded default: TypeScript TPM simulator, in-process issuer`,
  async run(argv, io) {
    const { values } = parseFlags(
      argv,
      { config: { type: 'string' }, dev: { type: 'boolean' } },
      { command: 'agent' },
    );
    if (values.dev !== true && values.config === undefined)
      throw new UsageError('agent: give --config FILE or --dev');
    io.out('edgeward agent: this build only prints the plan; it issues no identity yet.');
    io.out(
      'plan: attest with the TPM -> obtain a gateway SVID and a delegated device CA -> seal them in the store -> serve devices on mTLS MQTT',
    );
    return 0;
  },
};
