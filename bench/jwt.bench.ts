/**
 * `npm run bench jwt`: the JWT-SVID calls (issue 18 item 4), each beside its X.509 counterpart.
 *
 * - Issuer: JWT-SVIDs (`Issuer.jwtSvid`: peer check, rate limit, ES256 signature, audit write)
 *   against X.509 renewals (`renewFinish` with the session of the last issuance, an SVID and a
 *   delegated CA CSR, as the agent renews) per CPU-second of this process, in process on a memory
 *   store (no TLS: the issuer's own work). Alternating rounds of BENCH_ROUND_MS (1500), three
 *   each; medians; every token is checked once by `jose` against the issuer's bundle.
 * - Agent: FetchJWTSVID answered from the agent's cache through the Workload API (a server
 *   process, bench/workload-server.ts --jwt, whose upstream call counts: the samples must not
 *   reach it) against the first FetchX509SVID message, both on one kept grpc-js channel (the
 *   caller attested once), BENCH_SAMPLES (300) each in alternating blocks; p50/p99 and the
 *   server's CPU per call.
 * The machine may be loaded by others: compare the ratios, not the absolute numbers.
 */
import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { systemClock } from '../runtime/core/clock.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { createDevIssuerFiles } from '../runtime/issuer/dev.ts';
import { Issuer } from '../runtime/issuer/issuer.ts';
import { openMemoryStore } from '../runtime/issuer/store.ts';
import { decodeBundle } from '../runtime/svid/bundle.ts';
import { softwareCaKey } from '../runtime/svid/ca-key.ts';
import { createCsr } from '../runtime/svid/csr.ts';
import type { IssuedIdentity } from '../runtime/upstream/protocol.ts';
import { workloadService } from '../runtime/workload/proto.ts';
import { cpuMs, spawnLines } from './process.ts';
import { median } from './stats.ts';

const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1500);
const ROUNDS = 3;
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 300);
const BLOCK = 50;
const TD = 'fleet.example';

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};

/** Operations of `op` in one round of ROUND_MS: per CPU-second of this process, and per second. */
async function round(op: () => Promise<void>): Promise<{ perCpuS: number; perS: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < ROUND_MS) {
    await op();
    n++;
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { perCpuS: n / ((cpu.user + cpu.system) / 1e6), perS: n / (wall / 1000) };
}

async function issuerRows(): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-jwt-bench-'));
  const dev = await createDevIssuerFiles(join(dir, 'dev'), {
    trustDomain: TD,
    clock: systemClock,
    random: cryptoRandom,
  });
  const store = await openMemoryStore();
  const issuer = await Issuer.create({
    trustDomain: TD,
    store,
    ca: dev.ca,
    clock: systemClock,
    random: cryptoRandom,
    methods: { joinToken: { enabled: true } },
    rateLimit: { perAddress: 1e9, perGateway: 1e9, windowMs: 60_000 },
    jwtSvid: {
      key: softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
      perGateway: 1e9,
    },
  });
  try {
    // CSRs made ahead (the gateway's work, not the issuer's), used in turn.
    const csrs = Array.from({ length: 16 }, () => ({
      csr: createCsr(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
      caCsr: createCsr(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
    }));
    const ctx = { address: '10.0.0.1' };
    const token = await issuer.createJoinToken('gw-bench', 600_000);
    const begin = await issuer.attestBegin({ method: 'join-token', token }, ctx);
    let id: IssuedIdentity = await issuer.attestFinish(
      { method: 'join-token', sessionId: begin.sessionId, ...(csrs[0] as { csr: Buffer; caCsr: Buffer }) },
      ctx,
    );
    let i = 0;
    const renew = async () => {
      const c = csrs[i++ % csrs.length] as { csr: Buffer; caCsr: Buffer };
      id = await issuer.renewFinish(
        { sessionId: id.nextSessionId, ...c },
        { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array },
      );
    };
    const req = { spiffeId: `${id.spiffeId}/workload/bench`, audience: ['bench.example'] };
    let last = '';
    const jwt = async () => {
      last = (await issuer.jwtSvid(req, { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array })).token;
    };
    for (let w = 0; w < 50; w++) {
      await jwt();
      await renew();
    }
    const keys = decodeBundle(issuer.bundle().json).jwtKeys.map((k) => ({ ...k.jwk, kid: k.kid }));
    await jwtVerify(last, createLocalJWKSet({ keys }), { audience: 'bench.example' });
    const j: { perCpuS: number; perS: number }[] = [];
    const r: { perCpuS: number; perS: number }[] = [];
    for (let k = 0; k < ROUNDS; k++) {
      j.push(await round(jwt));
      r.push(await round(renew));
    }
    const jc = median(j.map((x) => x.perCpuS));
    const rc = median(r.map((x) => x.perCpuS));
    return [
      `| issuer: JWT-SVIDs per CPU-second (per wall second) | ${jc.toFixed(0)} (${median(j.map((x) => x.perS)).toFixed(0)}) | | |`,
      `| issuer: X.509 renewals (SVID + delegated CA) per CPU-second (per wall second) | ${rc.toFixed(0)} (${median(r.map((x) => x.perS)).toFixed(0)}) | | |`,
      `| issuer: JWT-SVIDs per renewal, per CPU-second | | | ${(jc / rc).toFixed(2)} |`,
    ];
  } finally {
    await issuer.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function agentRows(): Promise<string[]> {
  const { child, next } = spawnLines(['--import', 'tsx', 'bench/workload-server.ts', '--jwt']);
  const socket = (await next()).replace(/^READY /, '');
  const Client = grpc.makeGenericClientConstructor(workloadService(), 'SpiffeWorkloadAPI');
  const client = new Client(`unix:${socket}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    FetchJWTSVID(
      r: object,
      m: grpc.Metadata,
      cb: (e: grpc.ServiceError | null, r?: { svids: { svid: string }[] }) => void,
    ): void;
    FetchX509SVID(r: object, m: grpc.Metadata): grpc.ClientReadableStream<{ svids: unknown[] }>;
  };
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  const jwtCall = (): Promise<number> => {
    const t0 = performance.now();
    return new Promise((resolve, reject) =>
      client.FetchJWTSVID({ audience: ['bench.example'] }, md, (e, r) => {
        if (e !== null || r?.svids.length !== 1) reject(e ?? new Error('no JWT-SVID'));
        else resolve(performance.now() - t0);
      }),
    );
  };
  const x509Call = (): Promise<number> => {
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const call = client.FetchX509SVID({}, md);
      call.once('data', (m: { svids: unknown[] }) => {
        call.cancel();
        if (m.svids.length === 1) resolve(performance.now() - t0);
        else reject(new Error('no SVID'));
      });
      call.once('error', (e: grpc.ServiceError) => {
        if (e.code !== grpc.status.CANCELLED) reject(e);
      });
    });
  };
  const count = async (): Promise<number> => {
    child.stdin?.write('count\n');
    return Number((await next()).replace(/^UPSTREAM /, ''));
  };
  try {
    for (let w = 0; w < 30; w++) {
      await jwtCall();
      await x509Call();
    }
    const upstream0 = await count();
    const jwt: number[] = [];
    const x509: number[] = [];
    let jwtCpu = 0;
    let x509Cpu = 0;
    for (let done = 0; done < SAMPLES; done += BLOCK) {
      let c0 = cpuMs(child.pid as number);
      for (let k = 0; k < BLOCK; k++) jwt.push(await jwtCall());
      jwtCpu += cpuMs(child.pid as number) - c0;
      c0 = cpuMs(child.pid as number);
      for (let k = 0; k < BLOCK; k++) x509.push(await x509Call());
      x509Cpu += cpuMs(child.pid as number) - c0;
    }
    const upstream = (await count()) - upstream0;
    if (upstream !== 0)
      throw new Error(`${upstream} samples reached the upstream: not answered from the cache`);
    const ratio = (a: number, b: number) => (a / b).toFixed(2);
    return [
      `| agent: FetchJWTSVID from the cache, p50 / p99 (${jwt.length} samples) | ${pct(jwt, 50).toFixed(2)} / ${pct(jwt, 99).toFixed(2)} ms | | p50 ${ratio(pct(jwt, 50), pct(x509, 50))}, p99 ${ratio(pct(jwt, 99), pct(x509, 99))} |`,
      `| agent: FetchX509SVID first message, p50 / p99 (${x509.length} samples) | ${pct(x509, 50).toFixed(2)} / ${pct(x509, 99).toFixed(2)} ms | | 1.00 |`,
      `| agent CPU per call: FetchJWTSVID / FetchX509SVID | ${(jwtCpu / jwt.length).toFixed(3)} / ${(x509Cpu / x509.length).toFixed(3)} ms | | ${ratio(jwtCpu, x509Cpu)} |`,
    ];
  } finally {
    client.close();
    child.stdin?.end();
  }
}

export default async function run(): Promise<void> {
  const rows = [...(await issuerRows()), ...(await agentRows())];
  console.log('| measure | value | | ratio |\n|---|---|---|---|');
  for (const r of rows) console.log(r);
  console.log(
    '\nratios: issuer row, JWT-SVIDs over renewals per CPU-second; agent rows, JWT over X.509 (below 1.00: the JWT call is cheaper). Noisy on a shared machine.',
  );
}
