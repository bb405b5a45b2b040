/**
 * The floor under the Workload API's latency, for `bench/workload.bench.ts`: a bare node:http2
 * server on a Unix socket that answers every call with the same response message the agent sent
 * (read from the file named by argv[2]), with no gRPC library, no attestation and no lookup. What
 * the agent takes beyond this is its own; what this takes is Node's HTTP/2 and the machine's.
 * Prints `READY <socket>` and serves until stdin closes.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const message = readFileSync(process.argv[2] as string);
const framed = Buffer.alloc(5 + message.length);
framed.writeUInt32BE(message.length, 1);
message.copy(framed, 5);
const socket = join(mkdtempSync(join(tmpdir(), 'edgeward-h2-floor-')), 'floor.sock');
const h2 = http2.createServer();
h2.on('stream', (stream) => {
  stream.on('error', () => {});
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
  stream.write(framed);
});
h2.on('sessionError', () => {});
const listener = net.createServer((conn) => h2.emit('connection', conn));
listener.listen(socket, () => console.log(`READY ${socket}`));
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
