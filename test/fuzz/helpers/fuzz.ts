/**
 * Shared machinery of the hostile-input fuzz tests (fast-check, property based).
 *
 * - Seeded and bounded: `EDGEWARD_FUZZ_SEED` (default 20260101) and `EDGEWARD_FUZZ_RUNS` (a
 *   multiplier of each property's default run count, default 1) make every run reproducible; a
 *   failure prints the seed and the counterexample, and `EDGEWARD_FUZZ_SEED=<seed>` replays it.
 * - Structured mutation: `mutated(seed)` takes a valid input and applies one to four edits that
 *   hostile peers make — bit flips, byte overwrites, truncation, inserted and deleted ranges,
 *   duplicated slices (nesting), and length-field lies (a DER length byte turned indefinite or
 *   huge, a TPM2B/u32 size rewritten).
 * - The property every parser must keep: `outcome(fn)` returns `ok` or the typed code; anything
 *   else (a RangeError, a TypeError, a non-ERR_ code, a promise that never settles) fails.
 * - Corpus: `corpus(name)` reads `test/fuzz/corpus/<name>.json`, the minimal reproducers kept
 *   for replay (hex, or text for textual formats).
 *
 * @example
 * ```ts
 * await fuzz('csr', fc.property(mutated(validCsr), (b) => { expectTyped(() => parseCsr(b)); }));
 * ```
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import * as assert from 'uvu/assert';
import { EdgewardError } from '../../../runtime/core/error.ts';

export const FUZZ_SEED = Number(process.env.EDGEWARD_FUZZ_SEED ?? 20260101);
export const FUZZ_SCALE = Number(process.env.EDGEWARD_FUZZ_RUNS ?? 1);

/** The codes a rejection may carry: stable, upper-case, `ERR_`-prefixed. */
export const CODE = /^ERR_[A-Z0-9_]+$/;

export type Outcome = 'ok' | string;

function classify(err: unknown): string {
  if (err instanceof EdgewardError && typeof err.code === 'string' && CODE.test(err.code)) return err.code;
  const e = err as { name?: string; code?: unknown; message?: string; stack?: string };
  throw new Error(
    `untyped rejection: ${e?.name ?? typeof err} code=${String(e?.code)}: ${e?.message ?? String(err)}\n${e?.stack ?? ''}`,
  );
}

/** Run a synchronous parser; return 'ok' or its typed code, and fail on anything untyped. */
export function expectTyped(fn: () => unknown): Outcome {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return classify(err);
  }
}

/** The async form, with a hang watchdog (`ms` of real time: a hang is a failure, not a wait). */
export async function expectTypedAsync(fn: () => Promise<unknown>, ms = 5_000): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang: no answer within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([fn(), hang]);
    return 'ok';
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('hang:')) throw err;
    return classify(err);
  } finally {
    clearTimeout(timer);
  }
}

/** Run a property with the project's seed and a bounded number of runs; print the seed on failure. */
export async function fuzz<T>(
  name: string,
  prop: fc.IProperty<T> | fc.IAsyncProperty<T>,
  numRuns = 200,
): Promise<void> {
  const runs = Math.max(1, Math.round(numRuns * FUZZ_SCALE));
  const details = await fc.check(prop as fc.IAsyncProperty<T>, { seed: FUZZ_SEED, numRuns: runs });
  if (details.failed && details.errorInstance) console.error(details.errorInstance);
  if (details.failed) {
    const msg = fc.defaultReportMessage(details) ?? 'property failed';
    assert.unreachable(
      `fuzz ${name} failed (EDGEWARD_FUZZ_SEED=${FUZZ_SEED}, runs=${runs}):\n${msg.slice(0, 4000)}`,
    );
  }
}

// ---- structured mutation ---------------------------------------------------------------------

type Edit =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'duplicate'; at: number; len: number }
  | { kind: 'der-length'; at: number; lie: number }
  | { kind: 'size16'; at: number; value: number }
  | { kind: 'size32'; at: number; value: number };

const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 32 }) }),
  fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ kind: fc.constant('der-length' as const), at: fc.nat(), lie: fc.nat({ max: 5 }) }),
  fc.record({
    kind: fc.constant('size16' as const),
    at: fc.nat(),
    value: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff),
  }),
  fc.record({
    kind: fc.constant('size32' as const),
    at: fc.nat(),
    value: fc.constantFrom(0, 1, 10, 0xff, 0x10000, 0x7fffffff, 0xffffffff),
  }),
);

/** DER length lies: indefinite, long form with absurd values, off-by-one both ways. */
const DER_LIES: readonly ((len: number) => number[])[] = [
  () => [0x80],
  () => [0x84, 0xff, 0xff, 0xff, 0xff],
  () => [0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  (n) => (n + 1 < 0x80 ? [n + 1] : [0x82, ((n + 1) >> 8) & 0xff, (n + 1) & 0xff]),
  (n) => (n > 0 ? [n - 1 < 0x80 ? n - 1 : 0x7f] : [0x01]),
  () => [0x81, 0x05],
];

export function applyEdit(input: Uint8Array, e: Edit): Buffer {
  const b = Buffer.from(input);
  const n = b.length;
  const at = n === 0 ? 0 : e.at % n;
  switch (e.kind) {
    case 'flip':
      if (n > 0) b[at] = (b[at] as number) ^ (1 << e.bit);
      return b;
    case 'set':
      if (n > 0) b[at] = e.value;
      return b;
    case 'truncate':
      return b.subarray(0, at);
    case 'insert':
      return Buffer.concat([b.subarray(0, at), e.bytes, b.subarray(at)]);
    case 'delete':
      return Buffer.concat([b.subarray(0, at), b.subarray(at + e.len)]);
    case 'duplicate':
      return Buffer.concat([b.subarray(0, at + e.len), b.subarray(at)]);
    case 'der-length': {
      // Rewrite the length octets of the TLV whose header starts at `at`.
      if (n < 2 || at + 1 >= n) return b;
      const first = b[at + 1] as number;
      const lenBytes = first < 0x80 ? 1 : 1 + (first & 0x7f);
      const lie = (DER_LIES[e.lie] as (len: number) => number[])(first < 0x80 ? first : 0x100);
      return Buffer.concat([b.subarray(0, at + 1), Buffer.from(lie), b.subarray(at + 1 + lenBytes)]);
    }
    case 'size16':
      if (at + 2 <= n) b.writeUInt16BE(e.value, at);
      return b;
    case 'size32':
      if (at + 4 <= n) b.writeUInt32BE(e.value >>> 0, at);
      return b;
    default: {
      const never: never = e;
      return never;
    }
  }
}

/** Arbitrary: one of `seeds`, edited one to four times. */
export function mutated(...seeds: Uint8Array[]): fc.Arbitrary<Buffer> {
  if (seeds.length === 0) throw new TypeError('mutated() needs a seed');
  return fc
    .tuple(fc.nat({ max: seeds.length - 1 }), fc.array(edit, { minLength: 1, maxLength: 4 }))
    .map(([i, edits]) =>
      edits.reduce<Buffer>((acc, e) => applyEdit(acc, e), Buffer.from(seeds[i] as Uint8Array)),
    );
}

/** Arbitrary: structured mutations of the seeds, or plain random bytes (a smaller share). */
export function hostileBytes(...seeds: Uint8Array[]): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { weight: 5, arbitrary: mutated(...seeds) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }).map((u) => Buffer.from(u)) },
  );
}

/** Arbitrary: a JSON text mutated as text (characters edited) or as a value (fields replaced). */
export function mutatedText(...seeds: string[]): fc.Arbitrary<string> {
  const asBytes = mutated(...seeds.map((s) => Buffer.from(s, 'utf8'))).map((b) => b.toString('utf8'));
  return fc.oneof(asBytes, fc.string({ maxLength: 200 }));
}

// ---- corpus ------------------------------------------------------------------------------------

export interface CorpusEntry {
  readonly name: string;
  /** Why it is kept: what it broke, or which edge it covers. */
  readonly note: string;
  readonly hex?: string;
  readonly text?: string;
  /** The outcome the replay expects: 'ok' or an ERR_ code. */
  readonly expect: string;
}

/** The recorded corpus `name`; never empty (a replay loop over nothing would pass vacuously). */
export function corpus(name: string): CorpusEntry[] {
  const file = new URL(`../corpus/${name}.json`, import.meta.url);
  const entries = JSON.parse(readFileSync(file, 'utf8')) as CorpusEntry[];
  assert.ok(Array.isArray(entries) && entries.length > 0, `corpus ${name} is empty`);
  return entries;
}

export function entryBytes(e: CorpusEntry): Buffer {
  if (e.hex !== undefined) return Buffer.from(e.hex, 'hex');
  return Buffer.from(e.text ?? '', 'utf8');
}
