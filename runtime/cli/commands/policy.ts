/** `edgeward policy`: reserved; its capability is not in this build yet. */
import { type Command, UsageError } from '../command.ts';

export const command: Command = {
  name: 'policy',
  summary: '',
  help: 'Usage: edgeward policy ...\n\nNot in this build yet.',
  async run() {
    throw new UsageError('policy: not in this build yet');
  },
};
