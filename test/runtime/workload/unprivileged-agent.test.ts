/**
 * The Workload API server run as the shipped systemd unit runs the agent (no systemd here): a
 * non-root uid, the unit's CapabilityBoundingSet=/AmbientCapabilities=/NoNewPrivileges=/UMask=
 * read from firmware-hooks/build/edgeward.service itself (setpriv, umask), and its ProtectProc=
 * as a private procfs mounted with that hidepid= (unshare -m), so the test and the unit cannot
 * drift. A workload under a third uid gets its SVID with the unit's capabilities, and
 * PERMISSION_DENIED (ERR_WORKLOAD_ATTESTATION_DENIED, logged once at error level) without.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { WorkloadEntry } from '../../../runtime/workload/entries.ts';
import { type ClientLine, pythonStubs, startClient } from './harness.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '../../..');
const UNIT = readFileSync(join(ROOT, 'firmware-hooks/build/edgeward.service'), 'utf8');
const AGENT_UID = 41201;
const WORKLOAD_UID = 41202;

/** Every value of `key=` in the unit, in order. */
const unitValues = (key: string): string[] =>
  UNIT.split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1).trim());
const caps = (key: string): string[] =>
  unitValues(key)
    .flatMap((v) => v.split(/\s+/))
    .filter((c) => c !== '');
const setprivCap = (c: string): string => `+${c.replace(/^CAP_/, '').toLowerCase()}`;

/** setpriv arguments granting what the unit grants (or the same without its ambient capabilities). */
function unitPrivileges(withCaps: boolean): string[] {
  const bounding = caps('CapabilityBoundingSet').map(setprivCap);
  const ambient = withCaps ? caps('AmbientCapabilities').map(setprivCap) : [];
  return [
    `--reuid=${AGENT_UID}`,
    `--regid=${AGENT_UID}`,
    '--clear-groups',
    `--bounding-set=${['-all', ...bounding].join(',')}`,
    ...(ambient.length > 0 ? [`--inh-caps=${ambient.join(',')}`, `--ambient-caps=${ambient.join(',')}`] : []),
    ...(unitValues('NoNewPrivileges').at(-1) === 'yes' ? ['--no-new-privs'] : []),
  ];
}

interface AgentRun {
  readonly answers: ClientLine[];
  readonly logs: { level: string; msg: string; fields: Record<string, unknown> }[];
}

/** Start the server as the unit would, let `clients` workloads (WORKLOAD_UID) fetch once each, stop it. */
async function runAgent(o: { withCaps: boolean; protectProc: string; clients: number }): Promise<AgentRun> {
  const stubsDir = mkdtempSync(join(tmpdir(), 'edgeward-wlu-'));
  const stubs = pythonStubs(stubsDir);
  const entries: WorkloadEntry[] = [{ name: 'wl', selectors: [`unix:uid:${WORKLOAD_UID}`] }];
  const umask = unitValues('UMask').at(-1) ?? '0022';
  const script =
    'set -e; if [ "$1" != default ]; then mount -t proc -o "hidepid=$1" proc /proc; fi; umask "$2"; shift 2; exec "$@"';
  const agent: ChildProcess = spawn(
    'unshare',
    [
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      script,
      'sh',
      o.protectProc,
      umask,
      'setpriv',
      ...unitPrivileges(o.withCaps),
      process.execPath,
      '--import',
      'tsx',
      join(HERE, 'agent-process.ts'),
      JSON.stringify(entries),
    ],
    { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  agent.stderr?.on('data', (d) => {
    stderr += d;
  });
  const logs: AgentRun['logs'] = [];
  const exited = new Promise<number | null>((resolve) => agent.once('exit', (code) => resolve(code)));
  const answers: ClientLine[] = [];
  try {
    const ready = await new Promise<{ socket: string }>((resolve, reject) => {
      const rl = createInterface({ input: agent.stdout as NodeJS.ReadableStream });
      rl.on('line', (l) => {
        const m = JSON.parse(l) as { ready?: { socket: string }; log?: AgentRun['logs'][number] };
        if (m.log !== undefined) logs.push(m.log);
        if (m.ready !== undefined) resolve(m.ready);
      });
      void exited.then((code) => reject(new Error(`agent exited (${code}): ${stderr}`)));
    });
    for (let i = 0; i < o.clients; i++) {
      const c = startClient(stubs, ready.socket, ['x509', '--max', '1'], { uid: WORKLOAD_UID });
      answers.push(await c.next());
      c.kill();
    }
  } finally {
    agent.stdin?.end();
    const code = await exited;
    rmSync(stubsDir, { recursive: true, force: true });
    assert.is(code, 0, `agent exit: ${stderr}`);
  }
  return { answers, logs };
}

test('the unit grants exactly CAP_SYS_PTRACE, hides unptraceable processes, denies ptrace-like syscalls', () => {
  assert.equal(caps('CapabilityBoundingSet'), ['CAP_SYS_PTRACE']);
  assert.equal(caps('AmbientCapabilities'), ['CAP_SYS_PTRACE']);
  assert.equal(unitValues('ProtectProc'), ['ptraceable']);
  assert.equal(unitValues('NoNewPrivileges'), ['yes']);
  assert.equal(unitValues('RuntimeDirectoryMode'), ['0755']);
  // What the unit's comment claims about systemd's groups, from systemd's own table.
  const groups = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const l of execFileSync('systemd-analyze', ['syscall-filter'], { encoding: 'utf8' }).split('\n')) {
    if (l.startsWith('@')) {
      current = [];
      groups.set(l.trim(), current);
    } else if (/^ {4}[^#\s]/.test(l)) current?.push(l.trim());
  }
  const expand = (name: string): Set<string> =>
    new Set((groups.get(name) ?? []).flatMap((m) => (m.startsWith('@') ? [...expand(m)] : [m])));
  const allowed = expand('@system-service');
  const denied = unitValues('SystemCallFilter')
    .filter((v) => v.startsWith('~'))
    .flatMap((v) => v.slice(1).split(/\s+/))
    .flatMap((t) => (t.startsWith('@') ? [...expand(t)] : [t]));
  for (const s of denied) allowed.delete(s);
  assert.ok(expand('@debug').has('ptrace'));
  for (const s of ['ptrace', 'pidfd_getfd', 'process_vm_readv', 'process_vm_writev'])
    assert.not.ok(allowed.has(s), `${s} allowed by the unit's SystemCallFilter=`);
  assert.ok(expand('@system-service').has('process_vm_readv'), 'why the unit denies it by name');
});

test("as the unit runs it (non-root, CAP_SYS_PTRACE, its ProtectProc): another uid's workload gets its SVID", async () => {
  const run = await runAgent({
    withCaps: true,
    protectProc: unitValues('ProtectProc').at(-1) ?? 'default',
    clients: 1,
  });
  assert.match(
    run.answers[0]?.svids?.[0]?.id ?? JSON.stringify(run.answers),
    /^spiffe:\/\/[^/]+\/gateway\/.+\/workload\/wl$/,
  );
  assert.equal(
    run.logs.filter((l) => l.level === 'error' || l.level === 'warn'),
    [],
  );
});

test('without the capability (same unit otherwise): PERMISSION_DENIED, ERR_WORKLOAD_ATTESTATION_DENIED logged once', async () => {
  const run = await runAgent({
    withCaps: false,
    protectProc: unitValues('ProtectProc').at(-1) ?? 'default',
    clients: 2,
  });
  for (const a of run.answers) {
    assert.is(a.error, 'PERMISSION_DENIED');
    assert.match(a.details ?? '', /not permitted/);
  }
  const errors = run.logs.filter((l) => l.level === 'error');
  assert.is(errors.length, 1, JSON.stringify(run.logs));
  assert.is(errors[0]?.fields.code, 'ERR_WORKLOAD_ATTESTATION_DENIED');
  assert.is(errors[0]?.fields.uid, WORKLOAD_UID);
  assert.match(String(errors[0]?.fields.reason), /\/proc hides it/);
  assert.is(run.logs.filter((l) => l.fields.event === 'workload.attestation_denied').length, 2);
  // Said at start too, before any caller is refused.
  assert.is(run.logs.find((l) => l.level === 'warn')?.fields.event, 'workload.unprivileged');
});

test('without the capability and without hidepid: the exe link is refused (EACCES), same typed outcome', async () => {
  const run = await runAgent({ withCaps: false, protectProc: 'default', clients: 1 });
  assert.is(run.answers[0]?.error, 'PERMISSION_DENIED');
  const errors = run.logs.filter((l) => l.level === 'error');
  assert.is(errors.length, 1, JSON.stringify(run.logs));
  assert.is(errors[0]?.fields.code, 'ERR_WORKLOAD_ATTESTATION_DENIED');
  assert.match(String(errors[0]?.fields.reason), /executable path: EACCES .*CAP_SYS_PTRACE/);
});

test.run();
