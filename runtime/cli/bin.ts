#!/usr/bin/env node
import type { CliIo } from './command.ts';
/** The process entry of `edgeward`: real stdio, real signals, real environment. */
import { main } from './main.ts';

const controller = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => controller.abort(new Error(sig)));
}
const io: CliIo = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
  env: process.env,
  cwd: process.cwd(),
  stopSignal: controller.signal,
};
// Until main settles, a drained event loop (a forgotten unref'd wait) is a failure, never exit 0:
// OTA tools read 0 from `edgeward hook` as "commit".
process.exitCode = 1;
main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`edgeward: unexpected failure: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
