/**
 * The seed of a test process's randomness, so a failure can be replayed: `EDGEWARD_TEST_SEED`
 * when set (scripts/test.mjs sets it for every file and prints it), else a fresh one printed on
 * stderr the first time it is asked for. Tests that need per-run variety seed from it instead of
 * `Math.random()` or `Date.now()`.
 *
 * @example
 * ```ts
 * const random = testRandom('issuer'); // seededRandom(`<seed>/issuer/<n>`), n counts calls
 * ```
 * Replay: `EDGEWARD_TEST_SEED=<printed seed> node --import tsx test/path/x.test.ts`.
 */
import { randomBytes } from 'node:crypto';
import type { Random } from '../../runtime/core/random.ts';
import { seededRandom } from '../../sim/random.ts';

let seed: string | undefined;
const made = new Map<string, number>();

export function testSeed(): string {
  if (seed === undefined) {
    const given = process.env.EDGEWARD_TEST_SEED;
    seed = given !== undefined && given !== '' ? given : randomBytes(6).toString('hex');
    if (given === undefined || given === '') {
      process.env.EDGEWARD_TEST_SEED = seed; // child processes replay with the same seed
      process.stderr.write(`test seed ${seed} (replay with EDGEWARD_TEST_SEED=${seed})\n`);
    }
  }
  return seed;
}

/** A seeded Random per call site label: the n-th call with a label gets `<seed>/<label>/<n>`. */
export function testRandom(label: string): Random {
  const n = made.get(label) ?? 0;
  made.set(label, n + 1);
  return seededRandom(`${testSeed()}/${label}/${n}`);
}
