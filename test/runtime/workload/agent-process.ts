/**
 * A Workload API server as its own process, for tests that run it as the shipped unit does (a
 * non-root uid, the unit's capabilities, umask and /proc view: unprivileged-agent.test.ts).
 * argv[2]: the registration entries (JSON). Prints `{"ready": {socket, stubs}}`, then every log line
 * as `{"log": {level, msg, fields}}`; closes the server and exits when stdin ends.
 */
import type { LogFields, Logger } from '../../../runtime/core/logger.ts';
import type { WorkloadEntry } from '../../../runtime/workload/entries.ts';
import { harness } from './harness.ts';

const out = (obj: unknown): void => void process.stdout.write(`${JSON.stringify(obj)}\n`);
const line =
  (level: string) =>
  (msg: string, fields: LogFields = {}): void =>
    out({ log: { level, msg, fields } });
const logger: Logger = { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') };

const entries = JSON.parse(process.argv[2] as string) as WorkloadEntry[];
const h = await harness(entries, { logger });
out({ ready: { socket: h.socket, stubs: h.stubs } });
process.stdin.resume();
process.stdin.once('end', () => {
  void h.close().then(() => process.exit(0));
});
