/**
 * `edgeward status`: asks the running agent over its admin socket and prints its identity,
 * expiries, rotation and upstream state. Without `--socket` it finds `.edgeward/admin.sock` from
 * the current directory upwards (where `npm start` runs the dev agent).
 */
import { adminRequest, findAdminSocket } from '../../admin/client.ts';
import { healthy, renderStatus, type StatusReport } from '../../admin/report.ts';
import { type Command, parseFlags } from '../command.ts';

export const command: Command = {
  name: 'status',
  summary: '',
  help: `Usage: edgeward status [--json] [--socket PATH]

  --json          print the status document as JSON (gateway SPIFFE ID, SVID and delegated CA
                  NotAfter, broker listeners, rotation, upstream, breaker, store, devices)
  --socket PATH   the agent's admin socket (default: .edgeward/admin.sock found from here upwards,
                  or $EDGEWARD_ADMIN_SOCKET)

Exit code 0 when the agent serves a valid SVID and its broker (when configured) did not fail to
start; 1 when it does not, or cannot be reached.`,
  async run(argv, io) {
    const { values } = parseFlags(
      argv,
      { json: { type: 'boolean' }, socket: { type: 'string' } },
      { command: 'status' },
    );
    const socket = values.socket ?? findAdminSocket(io.cwd, io.env);
    const report = await adminRequest<StatusReport>(socket, 'GET', '/v1/status');
    if (values.json === true) io.out(JSON.stringify(report, null, 2));
    else io.out(renderStatus(report, Date.parse(report.clock.now)));
    return healthy(report) ? 0 : 1;
  },
};
