/**
 * `npm run bench agent`: the gateway agent.
 *
 * 1. Store: write 1,000 device records in one atomic batch and reload them, through the sealed
 *    store (CBOR + AES-256-GCM per value) side by side with plain LevelDB + CBOR (the naive way,
 *    no sealing), both on classic-level; medians of 7 alternated rounds, ratio printed.
 * 2. Process start to serving a cached identity while offline (goal ≤ 1 s): a dev agent runs once
 *    to fill ./.edgeward (TPM simulator, in-process issuer), then `edgeward agent --config` restarts
 *    on that store with an unreachable upstream; time from spawn until the admin socket reports
 *    `serving`, median of 5, with a bare `node -e 0` start alongside for scale.
 * 3. Idle RSS of that offline agent (broker running), 3 s after it serves (goal ≤ 60 MB).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from 'cbor-x';
import { Level } from 'level';
import { adminRequest } from '../runtime/admin/client.ts';
import { nullLogger } from '../runtime/core/logger.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { keyFileProtector } from '../runtime/store/key-file.ts';
import { type LevelDb, SealedStore } from '../runtime/store/sealed-store.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const TSX = join(ROOT, 'node_modules/tsx/dist/loader.mjs');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

function records(n: number) {
  return Array.from({ length: n }, (_, i) => ({
    deviceId: `sensor-${i}`,
    spiffeId: `spiffe://fleet.example/gateway/gw-1/device/sensor-${i}`,
    serial: (0x4000_0000_0000 + i).toString(16),
    notAfter: Date.UTC(2026, 0, 1) + 3_600_000,
    issuedAt: Date.UTC(2026, 0, 1),
  }));
}

async function storeRound(dir: string, sealed: boolean): Promise<number> {
  const recs = records(1000);
  const path = join(dir, `${sealed ? 's' : 'p'}-${Math.random()}`);
  const t0 = performance.now();
  if (sealed) {
    const db = new Level<string, Uint8Array>(path, {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    }) as unknown as LevelDb;
    const protector = await keyFileProtector(join(dir, 'kek'), cryptoRandom, nullLogger);
    let store = await SealedStore.open({ db, protector, random: cryptoRandom, logger: nullLogger });
    await store.batch(recs.map((r) => ({ type: 'put' as const, name: `device/${r.deviceId}`, value: r })));
    await store.close();
    const db2 = new Level<string, Uint8Array>(path, {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    }) as unknown as LevelDb;
    store = await SealedStore.open({ db: db2, protector, random: cryptoRandom, logger: nullLogger });
    let n = 0;
    for await (const _ of store.entries('device/')) n++;
    if (n !== 1000) throw new Error(`reloaded ${n}`);
    await store.close();
  } else {
    let db = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' });
    await db.batch(
      recs.map((r) => ({ type: 'put' as const, key: `device/${r.deviceId}`, value: encode(r) })),
    );
    await db.close();
    db = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' });
    let n = 0;
    for await (const [, v] of db.iterator({ gte: 'device/', lt: 'device/\uffff' })) {
      decode(v);
      n++;
    }
    if (n !== 1000) throw new Error(`reloaded ${n}`);
    await db.close();
  }
  return performance.now() - t0;
}

async function waitServing(socket: string, deadline: number): Promise<void> {
  for (;;) {
    try {
      const s = await adminRequest<{ gateway: { serving: boolean } }>(socket, 'GET', '/v1/status');
      if (s.gateway.serving) return;
    } catch {}
    if (performance.now() > deadline) throw new Error('agent did not serve in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function startAgent(args: string[], cwd: string) {
  return spawn(process.execPath, ['--import', `file://${TSX}`, join(ROOT, 'runtime/cli/bin.ts'), ...args], {
    cwd,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

async function stopAgent(child: ReturnType<typeof spawn>): Promise<void> {
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await done;
}

export default async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-bench-agent-'));
  try {
    const sealed: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < 7; i++) {
      plain.push(await storeRound(dir, false));
      sealed.push(await storeRound(dir, true));
    }
    const s = median(sealed);
    const p = median(plain);
    console.log('store: 1,000 device records, one batch write + close + reopen + reload (classic-level)');
    console.log(`  sealed store (CBOR + AES-256-GCM)   ${s.toFixed(1)} ms`);
    console.log(`  plain LevelDB + CBOR (naive)        ${p.toFixed(1)} ms`);
    console.log(`  ratio sealed / plain                ${(s / p).toFixed(2)}×`);

    // Fill a data dir with a real identity through the dev agent, then restart offline.
    const dev = startAgent(['agent', '--dev', '--mqtt-port', '0', '--enroll-port', '0'], dir);
    await waitServing(join(dir, '.edgeward', 'admin.sock'), performance.now() + 60_000);
    await stopAgent(dev);
    const data = join(dir, '.edgeward');
    writeFileSync(
      join(dir, 'agent.yaml'),
      [
        'version: 1',
        'trustDomain: edgeward.dev',
        `dataDir: ${data}`,
        `tpm: sim:${join(data, 'tpm')}`,
        'attestation: { method: tpm, pcrs: "sha256:0,1,2,3,4,5,6,7" }',
        'upstream: { endpoints: ["https://127.0.0.1:9"], timeout: 2s }',
        'broker: { listen: { port: 0 }, enrollment: { port: 0 } }',
        '',
      ].join('\n'),
    );
    const starts: number[] = [];
    const bare: number[] = [];
    let rssMb = 0;
    for (let i = 0; i < 5; i++) {
      let t0 = performance.now();
      await new Promise((r) => spawn(process.execPath, ['-e', '0']).once('exit', r));
      bare.push(performance.now() - t0);
      t0 = performance.now();
      const child = startAgent(['agent', '--config', join(dir, 'agent.yaml')], dir);
      await waitServing(join(data, 'admin.sock'), performance.now() + 30_000);
      starts.push(performance.now() - t0);
      if (i === 0) {
        await new Promise((r) => setTimeout(r, 3000));
        const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
        rssMb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
      }
      await stopAgent(child);
    }
    const st = median(starts);
    console.log('offline restart: spawn → admin socket reports a valid cached SVID (upstream unreachable)');
    console.log(
      `  edgeward agent --config (via tsx)   ${st.toFixed(0)} ms   goal ≤ 1000 ms: ${st <= 1000 ? 'met' : 'MISSED'}`,
    );
    console.log(
      `  bare node -e 0                      ${median(bare).toFixed(0)} ms   ratio ${(st / median(bare)).toFixed(1)}×`,
    );
    console.log(
      `idle RSS (serving offline, broker up) ${rssMb.toFixed(1)} MB   goal ≤ 60 MB: ${rssMb <= 60 ? 'met' : 'MISSED'}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
