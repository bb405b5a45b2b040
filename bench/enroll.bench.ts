/**
 * `npm run bench enroll`: enrollments per second on the gateway over EST (RFC 7030), with the
 * bootstrap of §4.1.1 and with provisioned roots, side by side in one run (BENCHMARKS.md:
 * alternate, repeat, medians). Until its removal the CBOR exchange ran here beside EST (same
 * signer, same tokens): its numbers are quoted in README.md. One child process
 * (`bench/enroll-server.ts`) serves with the product's device signer (software CA key); this
 * process enrolls `BATCH` devices per round with
 * `CONCURRENCY` in flight, alternating the protocols for `ROUNDS` rounds, each enrollment the
 * full device flow (bootstrap trust from the token's fingerprint, CSR, verify the answer);
 * `est-known-roots` is EST for a device provisioned with the roots (no `cacerts` round trip).
 * Reported per protocol: the gateway's CPU per enrollment (utime+stime of the child, so the
 * enrollments per second one gateway core sustains), wall-clock throughput, and latency
 * p50/p99 as the device sees it.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { createInterface } from 'node:readline';
import { enroll as estEnroll } from '../transport/enroll/est-client.ts';
import { cpuMs } from './process.ts';
import { median } from './stats.ts';

const ROUNDS = Number(process.env.BENCH_ENROLL_ROUNDS ?? 5);
const BATCH = Number(process.env.BENCH_ENROLL_BATCH ?? 100);
const CONCURRENCY = Number(process.env.BENCH_ENROLL_CONCURRENCY ?? 4);

type Enroll = (o: { host: string; port: number; deviceId: string; token: string }) => Promise<unknown>;

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};

export default async function run(): Promise<void> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', new URL('./enroll-server.ts', import.meta.url).pathname, String(ROUNDS * BATCH)],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const first = await new Promise<string>((resolve) =>
    createInterface({ input: child.stdout }).once('line', resolve),
  );
  const info = JSON.parse(first) as {
    servers: { name: string; port: number }[];
    tokens: Record<string, { deviceId: string; token: string }[]>;
    rootsPem: string;
  };
  const roots = [new X509Certificate(info.rootsPem)];
  const clients: Record<string, Enroll> = {
    est: (o) =>
      estEnroll({ ...o, key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, now: Date.now }),
    // the same without the bootstrap (a device provisioned with the roots): one TLS handshake
    'est-known-roots': (o) =>
      estEnroll({
        ...o,
        roots,
        key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
        now: Date.now,
      }),
  };
  const servers = info.servers.filter((s) => clients[s.name] !== undefined);
  const stats: Record<string, { cpu: number[]; rate: number[]; lat: number[] }> = {};
  for (const s of servers) stats[s.name] = { cpu: [], rate: [], lat: [] };
  // one warm-up enrollment each (JIT, TLS contexts), not counted
  const next: Record<string, number> = {};
  for (const s of servers) {
    const t = info.tokens[s.name]?.[0] as { deviceId: string; token: string };
    await (clients[s.name] as Enroll)({ host: '127.0.0.1', port: s.port, ...t });
    next[s.name] = 1;
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of round % 2 === 0 ? servers : [...servers].reverse()) {
      const tokens = info.tokens[s.name] as { deviceId: string; token: string }[];
      const from = next[s.name] as number;
      const batch = tokens.slice(from, Math.min(from + BATCH, tokens.length));
      next[s.name] = from + batch.length;
      const c0 = cpuMs(child.pid as number);
      const t0 = performance.now();
      let i = 0;
      const worker = async (): Promise<void> => {
        while (i < batch.length) {
          const t = batch[i++] as { deviceId: string; token: string };
          const a = performance.now();
          await (clients[s.name] as Enroll)({ host: '127.0.0.1', port: s.port, ...t });
          stats[s.name]?.lat.push(performance.now() - a);
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      const wall = performance.now() - t0;
      const cpu = cpuMs(child.pid as number) - c0;
      stats[s.name]?.cpu.push(cpu / batch.length);
      stats[s.name]?.rate.push((batch.length * 1000) / wall);
    }
  }
  child.stdin.end();
  console.log(
    `enrollment: ${ROUNDS} rounds x ${BATCH} enrollments per protocol, ${CONCURRENCY} in flight, alternated; medians over rounds`,
  );
  console.log(
    '| protocol | gateway CPU / enrollment | enrollments/s per gateway core | wall enrollments/s | latency p50 | p99 |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const s of servers) {
    const x = stats[s.name] as { cpu: number[]; rate: number[]; lat: number[] };
    const cpu = median(x.cpu);
    console.log(
      `| ${s.name} | ${cpu.toFixed(2)} ms | ${(1000 / cpu).toFixed(0)} | ${median(x.rate).toFixed(0)} | ${pct(x.lat, 50).toFixed(1)} ms | ${pct(x.lat, 99).toFixed(1)} ms |`,
    );
  }
}
