/**
 * `npm run bench workload`: the Workload API (issue 18 goal: ≤ 5 ms p99 for attestation plus the
 * first FetchX509SVID answer; ≤ 5 MB extra RSS for 100 open streams). The server runs in its own
 * process (bench/workload-server.ts); each sample is a NEW connection from this process (so a
 * fresh SO_PEERCRED + /proc attestation) up to the first FetchX509SVID message. Then 100
 * connections each with an open FetchX509SVID stream, and the server's RSS before and after.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { fetchX509Once } from '../runtime/workload/client.ts';
import { workloadService } from '../runtime/workload/proto.ts';
import { rssMb } from './process.ts';

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};

export default async function run(): Promise<void> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', new URL('workload-server.ts', import.meta.url).pathname],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const line = await createInterface({ input: child.stdout as NodeJS.ReadableStream })
    [Symbol.asyncIterator]()
    .next();
  const socket = String(line.value).replace(/^READY /, '');
  try {
    for (let i = 0; i < 20; i++) await fetchX509Once(socket); // warm-up (hash cache, JIT)
    const ms: number[] = [];
    for (let i = 0; i < 300; i++) {
      const t0 = performance.now();
      const r = await fetchX509Once(socket);
      ms.push(performance.now() - t0);
      if (r.svids.length !== 1) throw new Error('no SVID');
    }
    const Client = grpc.makeGenericClientConstructor(workloadService(), 'SpiffeWorkloadAPI');
    const before = rssMb(child.pid as number);
    const clients: grpc.Client[] = [];
    const md = new grpc.Metadata();
    md.set('workload.spiffe.io', 'true');
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        // One channel each, so 100 connections (grpc-js would share one subchannel otherwise).
        const c = new Client(`unix:${socket}`, grpc.credentials.createInsecure(), {
          'grpc.use_local_subchannel_pool': 1,
        });
        clients.push(c);
        const call = (
          c as unknown as { FetchX509SVID(r: object, m: grpc.Metadata): grpc.ClientReadableStream<unknown> }
        ).FetchX509SVID({}, md);
        call.on('error', () => {});
        await new Promise((res) => call.once('data', res));
      }),
    );
    const after = rssMb(child.pid as number);
    console.log('| measure | value |\n|---|---|');
    console.log(`| new connection → attestation → first FetchX509SVID, p50 | ${pct(ms, 50).toFixed(2)} ms |`);
    console.log(`| same, p99 (300 samples) | ${pct(ms, 99).toFixed(2)} ms |`);
    console.log(
      `| server RSS before / with 100 open streams (100 connections) | ${before.toFixed(1)} / ${after.toFixed(1)} MB (+${(after - before).toFixed(1)} MB) |`,
    );
    for (const c of clients) c.close();
  } finally {
    child.stdin?.end();
  }
}
