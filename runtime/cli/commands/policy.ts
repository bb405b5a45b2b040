/**
 * `edgeward policy check FILE`: validate a broker authorization policy, so CI can gate changes.
 * Exit 0 when valid, 1 when invalid (every problem printed as `FILE:LINE: path: message`),
 * 2 on a usage mistake.
 */
import { readFile } from 'node:fs/promises';
import { parsePolicy } from '../../../transport/policy/load.ts';
import { type Command, parseFlags, UsageError } from '../command.ts';

const HELP = `Usage: edgeward policy check FILE

Validate a broker authorization policy file (YAML). Prints every problem with its line.
Exit codes: 0 valid, 1 invalid, 2 usage.

Policy format:
  version: 1
  rules:
    - match: "{self}/device/*"        # SPIFFE ID pattern; {self} = this gateway's ID
      clientId: device                # device (default) or any
      publish: ["devices/{device}/#"]
      subscribe: ["devices/{device}/#"]
      retain: ["devices/{device}/state"]`;

export const command: Command = {
  name: 'policy',
  summary: 'check a broker authorization policy file',
  help: HELP,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    if (sub !== 'check') throw new UsageError(`policy: unknown subcommand '${sub ?? ''}' (expected: check)`);
    const { positionals } = parseFlags(rest, {}, { positionals: 1, command: 'policy check' });
    const file = positionals[0];
    if (file === undefined) throw new UsageError('policy check: missing FILE');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      io.err(`${file}: cannot read: ${(err as Error).message}`);
      return 1;
    }
    const r = parsePolicy(text);
    if (r.ok) {
      io.out(`${file}: ok (${r.policy.rules.length} rule${r.policy.rules.length === 1 ? '' : 's'})`);
      return 0;
    }
    for (const i of r.issues) {
      io.err(`${file}:${i.line ?? 1}: ${i.path ? `${i.path}: ` : ''}${i.message}`);
    }
    return 1;
  },
};
