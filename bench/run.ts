/**
 * `npm run bench [filter]`: runs every `bench/*.bench.ts` (or those whose name contains the
 * filter) one after another. Each file's default export `run()` prints its own side-by-side
 * table with ratios; this runner only sequences them and reports failures.
 */
import 'reflect-metadata';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const filter = process.argv[2];
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts') && (filter === undefined || f.includes(filter)))
  .sort();

let failed = 0;
for (const f of files) {
  console.log(`\n== ${f}`);
  try {
    const mod = (await import(new URL(f, import.meta.url).href)) as { default: () => Promise<void> };
    await mod.default();
  } catch (err) {
    failed++;
    console.error(`${f} failed: ${(err as Error).stack ?? String(err)}`);
  }
}
if (files.length === 0) console.log('no benchmarks matched');
process.exitCode = failed === 0 ? 0 : 1;
