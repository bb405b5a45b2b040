/**
 * What the benchmarks read about a measured child process: its CPU time and RSS from /proc, and
 * how the shipped systemd unit launches the agent (its node flags and `Environment=` lines), so
 * every benchmark runs edgeward the way a gateway does; and a server child spoken to by lines
 * (`spawnLines`: commands on stdin, answers on stdout).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const TICK_MS = 1000 / 100; // USER_HZ

/** utime + stime of `pid` in ms (/proc/<pid>/stat; fields counted after the `)` of comm). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
}

/** Resident set size of `pid` in MB (VmRSS of /proc/<pid>/status). */
export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

/** The node flags of the shipped unit: what sits between `node` and the script in ExecStart. */
export function unitNodeFlags(unitText: string): string[] {
  const exec = /^ExecStart=(.*)$/m.exec(unitText)?.[1] ?? '';
  const words = exec.trim().split(/\s+/);
  const script = words.findIndex((w) => w.endsWith('.mjs') || w.endsWith('.js'));
  return words.slice(1, script < 0 ? 1 : script);
}

/** The unit's `Environment=NAME=VALUE` lines (NODE_ENV and the allocator tuning). */
export function unitEnvironment(unitText: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of unitText.matchAll(/^Environment=([A-Za-z_][A-Za-z0-9_]*)=(\S*)$/gm))
    env[m[1] as string] = m[2] as string;
  return env;
}

/** `node <args>` with stdin and stdout piped; `next()` is its next stdout line (throws once it exited). */
export function spawnLines(
  args: readonly string[],
  env: Record<string, string> = {},
): { child: ChildProcess; next(): Promise<string> } {
  const child = spawn(process.execPath, [...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  return {
    child,
    async next() {
      const l = await lines.next();
      if (l.done) throw new Error(`${args.at(-1)} exited`);
      return String(l.value);
    },
  };
}
