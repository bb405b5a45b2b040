/**
 * The load generator of `bench/issuer-ha.bench.ts`, in its own process: `node --import tsx
 * bench/issuer-ha-load.ts '<json>'` with { urls, tpmDirs, ca (PEM), concurrency, ms, warmupMs }.
 * Enrolls one tpm gateway per simulator state directory (`issuer-ha-gateway.ts`, spread over the
 * replicas), warms up (closed loop, `warmupMs`) and prints { phase: 'ready' }; then runs the
 * phases the driver asks for on stdin, one line each, each renewal going to the next replica in
 * turn (what the agent's endpoint list does on failover):
 * - `peak`: `concurrency` workers renewing back to back for `ms`;
 * - `steady R`: an open loop at R renewals/s for `ms`, each renewal's latency counted from its
 *   scheduled time (a renewal that waits for a free gateway or a late timer counts its wait);
 * - `floor`: the peak loop, each request GET /v1/bundle on a fresh mTLS connection with the
 *   gateway's SVID (handshake, HTTP, client certificate read; no store, no signing): what a
 *   renewal costs the issuer before its own work;
 * - `exit`.
 * Each phase answers one line { phase, renewals, seconds, p50, p99, errors } (latencies in ms).
 * The quote for a gateway's next renewal is made as soon as the last one returned, off the
 * measured path.
 */
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { BenchGateway } from './issuer-ha-gateway.ts';

const o = JSON.parse(process.argv[2] ?? '{}') as {
  urls: string[];
  tpmDirs: string[];
  ca: string;
  concurrency: number;
  ms: number;
  warmupMs: number;
};

const say = (x: unknown): void => {
  process.stdout.write(`${JSON.stringify(x)}\n`);
};

const gateways: BenchGateway[] = [];
for (const dir of o.tpmDirs) gateways.push(await BenchGateway.open(dir, o.ca));
// Enroll four at a time (attestation is not what is measured).
for (let i = 0; i < gateways.length; i += 4)
  await Promise.all(
    gateways.slice(i, i + 4).map((g, j) => g.enroll(o.urls[(i + j) % o.urls.length] as string)),
  );
await Promise.all(gateways.map((g) => g.prepare()));

/** Idle gateways (their next quote made), and those waiting for one. */
const idle: BenchGateway[] = [...gateways];
const waiting: ((g: BenchGateway) => void)[] = [];
const takeIdle = (): Promise<BenchGateway> => {
  const g = idle.shift();
  return g !== undefined ? Promise.resolve(g) : new Promise((resolve) => waiting.push(resolve));
};
const giveBack = (g: BenchGateway): void => {
  const w = waiting.shift();
  if (w !== undefined) w(g);
  else idle.push(g);
};

let next = 0;
interface Tally {
  latencies: number[];
  errors: number;
}

/** One renewal on a gateway; the latency counts from `since`. */
async function renewal(g: BenchGateway, since: number, t: Tally): Promise<void> {
  const url = o.urls[next++ % o.urls.length] as string;
  const status = await g.renew(url).catch(() => 0);
  if (status === 200) t.latencies.push(performance.now() - since);
  else t.errors++;
  await g.prepare().catch(() => undefined);
  giveBack(g);
}

function summary(t: Tally, seconds: number) {
  const l = t.latencies.sort((a, b) => a - b);
  const q = (p: number) => l[Math.min(l.length - 1, Math.floor(p * l.length))] ?? 0;
  return { renewals: l.length, seconds, p50: q(0.5), p99: q(0.99), errors: t.errors };
}

async function closedLoop(ms: number, floor = false): Promise<ReturnType<typeof summary>> {
  const t: Tally = { latencies: [], errors: 0 };
  const start = performance.now();
  const deadline = start + ms;
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      while (performance.now() < deadline) {
        const g = await takeIdle();
        if (!floor) {
          await renewal(g, performance.now(), t);
          continue;
        }
        const t0 = performance.now();
        const status = await g.floor(o.urls[next++ % o.urls.length] as string).catch(() => 0);
        if (status === 200) t.latencies.push(performance.now() - t0);
        else t.errors++;
        giveBack(g);
      }
    }),
  );
  return summary(t, (performance.now() - start) / 1000);
}

async function openLoop(rate: number, ms: number): Promise<ReturnType<typeof summary>> {
  const t: Tally = { latencies: [], errors: 0 };
  const interval = 1000 / rate;
  const start = performance.now();
  const running: Promise<void>[] = [];
  for (let k = 0; ; k++) {
    const due = start + k * interval;
    if (due >= start + ms) break;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    running.push(takeIdle().then((g) => renewal(g, due, t)));
  }
  await Promise.all(running);
  return summary(t, (performance.now() - start) / 1000);
}

await closedLoop(o.warmupMs);
say({ phase: 'ready' });
for await (const cmd of createInterface({ input: process.stdin })) {
  const [what, arg] = cmd.split(' ');
  if (what === 'peak') say({ phase: 'peak', ...(await closedLoop(o.ms)) });
  else if (what === 'steady') say({ phase: 'steady', ...(await openLoop(Math.max(1, Number(arg)), o.ms)) });
  else if (what === 'floor') say({ phase: 'floor', ...(await closedLoop(o.ms, true)) });
  else break;
}
await Promise.all(gateways.map((g) => g.close()));
process.exit(0);
