/**
 * `npm run bench sim-fleet`: what made the 72-hour fleet simulation slow, side by side. Every
 * simulated minute each device is authorized the way the gateway's broker authorizes a
 * connection; the simulator used to hand the verifier DER buffers (`SvidVerifier.verifyDer`,
 * which parses the leaf again on every call, cache hit or not), it now keeps each chain parsed
 * once at issuance and calls `verifyCerts` (the broker's path: it parses a peer chain once per
 * handshake). Rows alternate round by round over the same 200 device chains; medians of 7 rounds.
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
const REPS = 20;

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
    const opts = () => ({
      now: agent.now(),
      bundle: agent.bundleSource.getBundleFor(TRUST_DOMAIN),
      revocation: agent.revocations,
    });
    const rows = {
      'verifyDer (DER every call, was)': (v: SvidVerifier) => {
        const o = opts();
        for (const c of chains) v.verifyDer(c, o);
      },
      'verifyCerts (parsed once, now)': (v: SvidVerifier) => {
        const o = opts();
        for (const c of parsed) v.verifyCerts(c, o);
      },
    };
    const times = new Map<string, number[]>(Object.keys(rows).map((k) => [k, []]));
    const verifiers = new Map(Object.keys(rows).map((k) => [k, new SvidVerifier()]));
    for (const [name, fn] of Object.entries(rows)) fn(verifiers.get(name) as SvidVerifier); // warm caches
    for (let r = 0; r < ROUNDS; r++)
      for (const [name, fn] of Object.entries(rows)) {
        const t = performance.now();
        for (let i = 0; i < REPS; i++) fn(verifiers.get(name) as SvidVerifier);
        times.get(name)?.push(((performance.now() - t) * 1000) / (REPS * chains.length));
      }
    const [a, b] = [...times.values()].map(median) as [number, number];
    console.log(`device authorizations: ${chains.length} chains × ${REPS} per round, ${ROUNDS} rounds`);
    for (const [name, xs] of times)
      console.log(`  ${name.padEnd(34)} ${median(xs).toFixed(1).padStart(7)} µs per authorization`);
    console.log(`  ratio was/now: ${(a / b).toFixed(1)}×`);
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
