/**
 * Test helper: a simulated TPM in a fresh temp directory, a `run(bytes)` that returns the parsed
 * response, and cleanup that closes the transport and removes the directory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { openSimTransport, type SimOptions, type SimTpmTransport } from '../../../sim/tpm/index.ts';
import { type Response, response } from './wire.ts';

export interface SimHarness {
  readonly tpm: SimTpmTransport;
  readonly dir: string;
  readonly clock: VirtualClock;
  run(cmd: Buffer): Promise<Response>;
  /** Close, then reopen the same state directory (a process restart). */
  reopen(options?: SimOptions): Promise<SimHarness>;
  cleanup(): Promise<void>;
}

export async function openSim(
  options: SimOptions = {},
  dir = mkdtempSync(join(tmpdir(), 'edgeward-simtpm-')),
): Promise<SimHarness> {
  const clock = (options.clock as VirtualClock | undefined) ?? new VirtualClock(Date.UTC(2026, 0, 1));
  const tpm = await openSimTransport(dir, { ...options, clock });
  const h: SimHarness = {
    tpm,
    dir,
    clock,
    run: async (cmd) => response(await tpm.send(cmd)),
    async reopen(more = {}) {
      await tpm.close();
      return openSim({ ...options, clock, ...more }, dir);
    },
    async cleanup() {
      await tpm.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}
