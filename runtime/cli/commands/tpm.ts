/** `edgeward tpm`: reserved; its capability is not in this build yet. */
import { type Command, UsageError } from '../command.ts';

export const command: Command = {
  name: 'tpm',
  summary: '',
  help: 'Usage: edgeward tpm ...\n\nNot in this build yet.',
  async run() {
    throw new UsageError('tpm: not in this build yet');
  },
};
