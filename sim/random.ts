/**
 * TEST ONLY: a deterministic `Random` seeded from a string. Never wire it into a real agent or
 * issuer: its output is predictable by design.
 */
import { createHash } from 'node:crypto';
import type { Random } from '../runtime/core/random.ts';

export function seededRandom(seed: string): Random {
  let counter = 0;
  const block = (): Buffer => createHash('sha256').update(`${seed}:${counter++}`).digest();
  return {
    bytes(n) {
      const out = Buffer.alloc(n);
      for (let off = 0; off < n; off += 32) block().copy(out, off);
      return out;
    },
    float() {
      return block().readUIntBE(0, 6) / 2 ** 48;
    },
  };
}
