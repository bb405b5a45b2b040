/**
 * `npm run bench sim-fleet`: what made the 72-hour fleet simulation slow, side by side. Every
 * simulated minute each device is authorized the way the gateway's broker authorizes a
 * connection; the simulator used to hand the verifier DER buffers (`SvidVerifier.verifyDer`,
 * which hashes the chain and parses the leaf again on every call, cache hit or not), it now keeps
 * each chain parsed once at issuance and calls `verifyCerts` (the broker's path: it parses a peer
 * chain once per handshake). Two pairs of rows over the same 200 device chains:
 * - cache hit: the verifier has seen the chain (every simulated minute but the first after an
 *   issuance or a bundle change): only the per-call work of each entry point and the time and
 *   revocation checks run;
 * - cache miss: the verifier is cleared before each pass, so every call does the whole
 *   certificate check (`certFacts` of each certificate, the signatures up to the bundle root).
 * Rows alternate round by round; medians of 7 rounds.
 * Last line: the in-process fleet's speed (4 gateways × 50 devices, 2 virtual hours).
 */

import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SvidVerifier } from '../runtime/spiffe/verify.ts';
import { Fleet, HOUR, TRUST_DOMAIN } from '../sim/fleet/fleet.ts';
import { median } from './stats.ts';

const ROUNDS = 7;
const HIT_REPS = 20;
const MISS_REPS = 3;

export default async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeward-bench-fleet-'));
  const fleet = await Fleet.create({ gateways: 1, devices: 200, dir, seed: 'bench' });
  try {
    await fleet.step();
    const agent = fleet.gateways[0]?.agent;
    const group = fleet.groups[0];
    if (agent === undefined || group === undefined) throw new Error('fleet did not start');
    const chains = group.devices.flatMap((d) => (d.chain === undefined ? [] : [d.chain]));
    const parsed = chains.map((c) => c.map((d) => new X509Certificate(d)));
    const o = () => ({
      now: agent.now(),
      bundle: agent.bundleSource.getBundleFor(TRUST_DOMAIN),
      revocation: agent.revocations,
    });
    const der = (v: SvidVerifier) => {
      const opts = o();
      for (const c of chains) v.verifyDer(c, opts);
    };
    const certs = (v: SvidVerifier) => {
      const opts = o();
      for (const c of parsed) v.verifyCerts(c, opts);
    };
    // [name, pass, passes per round, clear the cache before each pass]
    const rows: [string, (v: SvidVerifier) => void, number, boolean][] = [
      ['hit:  verifyDer (DER every call, was)', der, HIT_REPS, false],
      ['hit:  verifyCerts (parsed once, now)', certs, HIT_REPS, false],
      ['miss: verifyDer (DER every call, was)', der, MISS_REPS, true],
      ['miss: verifyCerts (parsed once, now)', certs, MISS_REPS, true],
    ];
    const times = rows.map((): number[] => []);
    const verifiers = rows.map(() => new SvidVerifier());
    // Warm up (and fill the hit rows' caches).
    for (const [k, [, fn]] of rows.entries()) fn(verifiers[k] as SvidVerifier);
    for (let r = 0; r < ROUNDS; r++)
      for (const [k, [, fn, reps, fresh]] of rows.entries()) {
        const v = verifiers[k] as SvidVerifier;
        let ms = 0;
        for (let i = 0; i < reps; i++) {
          if (fresh) v.clear();
          const t = performance.now();
          fn(v);
          ms += performance.now() - t;
        }
        times[k]?.push((ms * 1000) / (reps * chains.length));
      }
    const med = times.map(median);
    console.log(`device authorizations: ${chains.length} chains per pass, ${ROUNDS} rounds`);
    for (const [k, [name, , reps]] of rows.entries())
      console.log(
        `  ${name.padEnd(38)} ${(med[k] as number).toFixed(1).padStart(7)} µs per authorization (${reps} passes a round)`,
      );
    const ratio = (a: number, b: number) => ((med[a] as number) / (med[b] as number)).toFixed(1);
    console.log(`  ratio was/now: cache hit ${ratio(0, 1)}×, cache miss ${ratio(2, 3)}×`);
    console.log(`  a miss costs ${ratio(3, 1)}× a hit (verifyCerts)`);
  } finally {
    await fleet.close();
  }
  const dir2 = join(dir, 'speed');
  const small = await Fleet.create({ gateways: 4, devices: 50, dir: dir2, seed: 'bench' });
  try {
    const t = performance.now();
    await small.runFor(2 * HOUR);
    const s = (performance.now() - t) / 1000;
    console.log(
      `in-process fleet, 4 gateways × 50 devices: 2 virtual hours in ${s.toFixed(1)} s (${((2 / s) * 60).toFixed(1)} virtual hours per real minute)`,
    );
  } finally {
    await small.close();
    await rm(dir, { recursive: true, force: true });
  }
}
