/** `edgeward device`: reserved; its capability is not in this build yet. */
import { type Command, UsageError } from '../command.ts';

export const command: Command = {
  name: 'device',
  summary: '',
  help: 'Usage: edgeward device ...\n\nNot in this build yet.',
  async run() {
    throw new UsageError('device: not in this build yet');
  },
};
