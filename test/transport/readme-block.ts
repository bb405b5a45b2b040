/**
 * The README's EST shell recipes as the tests run them: `readmeBlock` takes the block after
 * `<!-- est:NAME -->` exactly as written there, `sh` runs it with bash in a directory with only
 * PATH and the given variables in its environment.
 *
 * @example
 * ```ts
 * const out = await sh(readmeBlock('enroll'), dir, { GW, DEVICE: 'dev-1', TOKEN: token });
 * assert.is(out.code, 0, out.stderr);
 * ```
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The shell block after `<!-- est:NAME -->` in README.md, exactly as written there. */
export function readmeBlock(name: string): string {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const m = new RegExp(`<!-- est:${name} -->\\n\`\`\`sh\\n([\\s\\S]*?)\\n\`\`\`\\n`).exec(readme);
  if (m === null) throw new Error(`README has no est:${name} block`);
  return m[1] as string;
}

/** Run a README block with bash in `dir`; resolves with its exit code and output. */
export function sh(
  script: string,
  dir: string,
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('bash', ['-c', script], { cwd: dir, env: { PATH: process.env.PATH ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    p.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
