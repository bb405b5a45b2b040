/** `edgeward status`: reserved; its capability is not in this build yet. */
import { type Command, UsageError } from '../command.ts';

export const command: Command = {
  name: 'status',
  summary: '',
  help: 'Usage: edgeward status ...\n\nNot in this build yet.',
  async run() {
    throw new UsageError('status: not in this build yet');
  },
};
