/** `edgeward config check`: validate a config file the way the agent or issuer will at boot. */

import { AGENT_ROLE, ISSUER_ROLE, loadConfigFile } from '../../config/load.ts';
import { systemClock } from '../../core/clock.ts';
import { ConfigError } from '../../errors.ts';
import { type Command, parseFlags, required, UsageError } from '../command.ts';

export const command: Command = {
  name: 'config',
  summary: 'validate an agent or issuer config file',
  help: `Usage: edgeward config check --role agent|issuer FILE

Validates FILE against the role's schema, applying the documented environment overrides, and
the bounds between values (issuer: every duration > 0 and bounded, svidTtl <= offlineBudget <=
what is left of the CA certificate at ca.certificate).
Prints every problem with its path and line; exit code 0 when valid, 1 when not.`,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    if (sub !== 'check') throw new UsageError(`config: expected subcommand 'check'`);
    const { values, positionals } = parseFlags(
      rest,
      { role: { type: 'string' } },
      { positionals: 1, command: 'config check' },
    );
    const role = required(values.role, 'role', 'config check');
    const file = required(positionals[0], 'FILE (argument)', 'config check');
    if (role !== 'agent' && role !== 'issuer')
      throw new UsageError(`config check: --role must be agent or issuer`);
    try {
      if (role === 'agent') await loadConfigFile(file, AGENT_ROLE, io.env);
      else await loadConfigFile(file, ISSUER_ROLE, io.env, { now: systemClock.now() });
      io.out(`${file}: valid ${role} config`);
      return 0;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const issue of err.issues)
        io.err(`${file}: ${issue.path ? `${issue.path}: ` : ''}${issue.message} [${err.code}]`);
      return 1;
    }
  },
};
