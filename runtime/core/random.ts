/**
 * Entropy as a dependency. Production uses `cryptoRandom`; a deterministic source for tests
 * lives in `sim/random` and is marked as test-only.
 */
import { randomBytes, randomInt } from 'node:crypto';

export interface Random {
  /** `n` uniformly random bytes. */
  bytes(n: number): Buffer;
  /** A uniformly random float in [0, 1), for jitter. Never used for secrets. */
  float(): number;
}

export const cryptoRandom: Random = {
  bytes: (n) => randomBytes(n),
  float: () => randomInt(0, 2 ** 48 - 1) / 2 ** 48,
};
