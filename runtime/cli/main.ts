/**
 * The `edgeward` command line, and the composition root: the only place that builds the real
 * clock, randomness, logger and I/O and hands them to libraries.
 */
import { isEdgewardError } from '../core/error.ts';
import { type CliIo, UsageError } from './command.ts';
import { COMMANDS } from './registry.ts';

const VERSION = '0.1.0';

export function topHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'edgeward: workload identity for edge gateways (TPM attestation, SPIFFE SVIDs, mTLS MQTT)',
    '',
    'Usage: edgeward <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `edgeward <command> --help` for the options of a command.',
  ].join('\n');
}

export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(topHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    io.out(VERSION);
    return 0;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (entry === undefined) {
    io.err(`edgeward: unknown command '${name}' (see edgeward --help)`);
    return 2;
  }
  const command = await entry.load();
  try {
    if (rest.includes('--help') || rest.includes('-h')) {
      io.out(command.help);
      return 0;
    }
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`edgeward ${err.message}`);
      return 2;
    }
    if (isEdgewardError(err)) {
      io.err(`edgeward ${name}: ${err.code}: ${err.message}`);
      return 1;
    }
    throw err;
  }
}
