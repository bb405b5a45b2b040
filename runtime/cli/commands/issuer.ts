/** `edgeward issuer`: reserved; its capability is not in this build yet. */
import { type Command, UsageError } from '../command.ts';

export const command: Command = {
  name: 'issuer',
  summary: '',
  help: 'Usage: edgeward issuer ...\n\nNot in this build yet.',
  async run() {
    throw new UsageError('issuer: not in this build yet');
  },
};
