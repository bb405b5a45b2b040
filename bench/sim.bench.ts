/**
 * `npm run bench sim`: one full TPM attestation round on the TypeScript simulator — the client
 * engineer's TpmAttestor doing EK read (NV certificate + persistent handle), AK create, the
 * issuer's software MakeCredential, ActivateCredential, quote of sha256:0-7 — median of 50 per row,
 * rows alternated round by round, side by side with swtpm 0.7 (Unix socket) running the same
 * round. Goal: ≤ 50 ms per round on the simulator (the 'vs goal' column is the swtpm goal of
 * tpm.bench.ts; the last line compares with this one).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openTransport } from '../attestors/tpm/transport/open.ts';
import { launchSwtpm } from '../sim/swtpm/launcher.ts';
import { openSimTransport } from '../sim/tpm/index.ts';
import { benchAttestation } from './tpm.bench.ts';

const GOAL_MS = 50;
const ROUNDS = 50;

export default async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeward-bench-sim-'));
  const sim = await openSimTransport(dir);
  const swtpm = await launchSwtpm();
  const real = await openTransport(swtpm.spec);
  try {
    const medians = await benchAttestation(
      [
        { name: 'simulator, ECC L-2 EK', transport: sim, ek: 'L-2' },
        { name: 'simulator, RSA L-1 EK', transport: sim, ek: 'L-1' },
        { name: 'simulator, ECC H-3 EK', transport: sim, ek: 'H-3' },
        { name: 'swtpm unix socket, RSA L-1 EK', transport: real, ek: 'L-1' },
      ],
      ROUNDS,
    );
    const worst = Math.max(...[...medians].filter(([k]) => k.startsWith('simulator')).map(([, v]) => v));
    const swtpmMs = medians.get('swtpm unix socket, RSA L-1 EK') ?? Number.NaN;
    console.log(
      `simulator goal ≤ ${GOAL_MS} ms: slowest simulator row ${worst.toFixed(1)} ms (${(worst / GOAL_MS).toFixed(2)}× goal, ` +
        `swtpm RSA L-1 row / slowest simulator row = ${(swtpmMs / worst).toFixed(2)}) — ${worst <= GOAL_MS ? 'met' : 'MISSED'}`,
    );
  } finally {
    await swtpm.stop(real);
    await real.close();
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  }
}
