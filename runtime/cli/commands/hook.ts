/** `edgeward hook`: reserved; its capability is not in this build yet. */
import { type Command, UsageError } from '../command.ts';

export const command: Command = {
  name: 'hook',
  summary: '',
  help: 'Usage: edgeward hook ...\n\nNot in this build yet.',
  async run() {
    throw new UsageError('hook: not in this build yet');
  },
};
