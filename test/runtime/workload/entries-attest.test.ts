/**
 * Registration entries (`edgeward workload check`, line-precise), kernel attestation of real
 * processes (/proc), the pid-reuse guard on a connection, and `edgeward workload fetch` against a
 * real server.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { attest } from '../../../runtime/workload/attest.ts';
import { containerOf } from '../../../runtime/workload/container-id.ts';
import { matchEntries, parseEntries } from '../../../runtime/workload/entries.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { rejects } from '../../helpers/rejects.ts';
import { harness } from './harness.ts';

const HOUR = 3_600_000;
const HEX = 'ab'.repeat(32);

test('entries: a valid file parses; matching needs every selector of an entry', () => {
  const entries = parseEntries(
    `version: 1\nentries:\n  - name: a\n    selectors: [unix:uid:1001, "unix:path:/usr/bin/x"]\n  - name: b\n    selectors: ["container:id:${HEX}"]\n    hint: ext\n`,
  );
  assert.equal(
    entries.map((e) => e.name),
    ['a', 'b'],
  );
  assert.equal(
    matchEntries(entries, new Set(['unix:uid:1001', 'unix:path:/usr/bin/x', 'unix:gid:5'])).map(
      (e) => e.name,
    ),
    ['a'],
  );
  assert.equal(matchEntries(entries, new Set(['unix:uid:1001'])), []);
});

test('workload check: every problem with its line; exit 1; a valid file exit 0', async () => {
  const dir = (await import('node:fs')).mkdtempSync(
    join((await import('node:os')).tmpdir(), 'edgeward-wlc-'),
  );
  const bad = join(dir, 'bad.yaml');
  writeFileSync(
    bad,
    [
      'version: 1', // 1
      'entries:', // 2
      '  - name: ok', // 3
      '    selectors: [unix:uid:1]', // 4
      '  - name: ok', // 5
      '    selectors:', // 6
      '      - unix:uid:abc', // 7
      '      - k8s:ns:default', // 8
      '  - name: "a/b"', // 9
      '    selectors: []', // 10
      '    colour: red', // 11
      '',
    ].join('\n'),
  );
  const t = captureIo();
  assert.is(await main(['workload', 'check', bad], t), 1);
  assert.equal(t.stderr, [
    `${bad}:5: entries[1].name: duplicate name "ok"`,
    `${bad}:7: entries[1].selectors[0]: malformed value for unix:uid: "abc"`,
    `${bad}:8: entries[1].selectors[1]: unknown selector "k8s:ns" (known: unix:uid, unix:gid, unix:supplementary_gid, unix:user, unix:group, unix:path, unix:sha256, container:id, container:image, container:image_id)`,
    `${bad}:11: entries[2].colour: unknown key`,
    `${bad}:9: entries[2].name: must be 1-64 of letters, digits, ".", "-", "_"`,
    `${bad}:10: entries[2].selectors: must be a non-empty list (default deny)`,
  ]);
  const syntax = join(dir, 'syntax.yaml');
  writeFileSync(syntax, 'version: 1\nentries:\n  - name: [a\n');
  const s = captureIo();
  assert.is(await main(['workload', 'check', syntax], s), 1);
  assert.match(s.stderr[0] ?? '', new RegExp(`^${syntax}:\\d+: `));
  const good = join(dir, 'good.yaml');
  writeFileSync(good, 'version: 1\nentries:\n  - name: dev\n    selectors: ["unix:uid:0"]\n');
  const g = captureIo();
  assert.is(await main(['workload', 'check', good], g), 0);
  assert.equal(g.stdout, [`${good}: ok (1 entry)`]);
  assert.is(await main(['workload', 'check'], captureIo()), 2);
});

test('container ids from cgroup: docker, containerd (CRI), podman, cri-o; none on the host', () => {
  const id = 'c0ffee'.repeat(10).slice(0, 64).padEnd(64, '0');
  assert.is(containerOf(`0::/system.slice/docker-${id}.scope\n`)?.id, id);
  assert.is(containerOf(`12:memory:/docker/${id}\n`)?.id, id);
  assert.is(containerOf(`0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-${id}.scope\n`)?.id, id);
  assert.is(
    containerOf(`0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${id}.scope/container\n`)
      ?.id,
    id,
  );
  assert.is(containerOf(`0::/kubepods/besteffort/pod1/crio-${id}.scope\n`)?.id, id);
  assert.is(containerOf('0::/user.slice/user-0.slice/session-1.scope\n')?.id, undefined);
});

test('attestation of a real process: uid, path, sha256 of its executable; a dead pid or another uid fails', async () => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const pid = child.pid as number;
    const a = await attest({ pid, uid: 0, gid: 0 });
    const exe = realpathSync(`/proc/${pid}/exe`);
    assert.ok(a.selectors.has('unix:uid:0'));
    assert.ok(a.selectors.has('unix:user:root'));
    assert.ok(a.selectors.has(`unix:path:${exe}`));
    assert.ok(a.selectors.has(`unix:sha256:${createHash('sha256').update(readFileSync(exe)).digest('hex')}`));
    // The kernel said another uid at connect than the process has now: refused.
    await rejects(() => attest({ pid, uid: 4242, gid: 0 }), 'ERR_WORKLOAD_ATTESTATION');
  } finally {
    child.kill('SIGKILL');
  }
  await new Promise((r) => child.once('exit', r));
  await rejects(() => attest({ pid: child.pid as number, uid: 0, gid: 0 }), 'ERR_WORKLOAD_ATTESTATION');
});

test('the executable hash cache: a binary rewritten in place (same size, mtime set back) is hashed again', async () => {
  const {
    copyFileSync,
    mkdtempSync,
    readFileSync: read,
    statSync: st,
    utimesSync,
    writeFileSync: write,
  } = await import('node:fs');
  const dir = mkdtempSync(join((await import('node:os')).tmpdir(), 'edgeward-exe-'));
  const exe = join(dir, 'worker');
  copyFileSync(realpathSync('/bin/sleep'), exe);
  const { chmodSync } = await import('node:fs');
  chmodSync(exe, 0o755);
  utimesSync(exe, 1_700_000_000, 1_700_000_000); // whole seconds: exactly restorable below
  const hashOf = async (): Promise<string | undefined> => {
    const child = spawn(exe, ['30'], { stdio: 'ignore' });
    try {
      await new Promise((r) => child.once('spawn', r));
      const a = await attest({
        pid: child.pid as number,
        uid: process.getuid?.() ?? 0,
        gid: process.getgid?.() ?? 0,
      });
      return [...a.selectors].find((s) => s.startsWith('unix:sha256:'))?.slice('unix:sha256:'.length);
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
  };
  const sha = (): string => createHash('sha256').update(read(exe)).digest('hex');
  const first = await hashOf();
  assert.is(first, sha());
  // Same inode, same size, mtime restored: only ctime tells the content changed (the section
  // header table at the end of the file is not used by exec).
  const before = st(exe);
  const bytes = read(exe);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0x01;
  write(exe, bytes);
  utimesSync(exe, 1_700_000_000, 1_700_000_000);
  assert.is(st(exe).mtimeMs, before.mtimeMs);
  assert.is(st(exe).ino, before.ino);
  const second = await hashOf();
  assert.is.not(second, first);
  assert.is(second, sha());
});

test('the executable hash: 8 concurrent first attestations of one new 24 MB binary read it once (/proc/self/io rchar)', async () => {
  const { appendFileSync, chmodSync, copyFileSync, mkdtempSync } = await import('node:fs');
  const dir = mkdtempSync(join((await import('node:os')).tmpdir(), 'edgeward-exe-'));
  const exe = join(dir, 'big-worker');
  copyFileSync(realpathSync('/bin/sleep'), exe);
  appendFileSync(exe, Buffer.alloc(24 * 1024 * 1024)); // trailing bytes: still runs, all hashed
  chmodSync(exe, 0o755);
  const size = statSync(exe).size;
  const child = spawn(exe, ['30'], { stdio: 'ignore' });
  try {
    await new Promise((r) => child.once('spawn', r));
    const rchar = (): number => Number(/rchar: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))?.[1]);
    const cred = { pid: child.pid as number, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    const before = rchar();
    const all = await Promise.all(Array.from({ length: 8 }, () => attest(cred)));
    const read = rchar() - before;
    const want = createHash('sha256').update(readFileSync(exe)).digest('hex');
    for (const a of all) assert.ok(a.selectors.has(`unix:sha256:${want}`));
    assert.ok(read < 2 * size, `read ${read} bytes for a ${size}-byte executable`);
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
});

test('pid reuse: a later call on a connection that finds another process (start time) ends the stream', async () => {
  const { attest: real } = await import('../../../runtime/workload/attest.ts');
  let calls = 0;
  const h = await harness([{ name: 'svc', selectors: ['unix:uid:0'] }], {
    ttlMs: HOUR,
    // The real /proc attestation; from the second call on, the pid looks like another process
    // (another start time), as when the peer died and its pid was reused.
    attest: async (cred) => {
      const a = await real(cred);
      calls++;
      return calls === 1 ? a : { ...a, facts: { ...a.facts, startTime: `${a.facts.startTime}1` } };
    },
  });
  try {
    const c = h.client(['x509']);
    assert.is((await c.next()).svids?.length, 1);
    await h.clock.advance(HOUR);
    const ended = await c.next();
    assert.is(ended.error, 'PERMISSION_DENIED');
    assert.match(ended.details ?? '', /pid reused/);
  } finally {
    await h.close();
  }
});

test('workload fetch: prints the ID and writes chain, key (0600) and bundle; refused → exit 1', async () => {
  const h = await harness([{ name: 'cli', selectors: [`unix:uid:${process.getuid?.()}`] }]);
  try {
    const out = join(h.dir, 'out');
    const t = captureIo();
    assert.is(await main(['workload', 'fetch', '--socket', h.socket, '--write', out], t), 0);
    assert.match(t.stdout[0] ?? '', `SPIFFE ID: ${h.pki.gateway.id}/workload/cli`);
    assert.is(statSync(join(out, 'svid.0.key')).mode & 0o777, 0o600);
    const chain = readFileSync(join(out, 'svid.0.pem'), 'utf8');
    assert.is(chain.match(/BEGIN CERTIFICATE/g)?.length, 2);
    assert.is(readFileSync(join(out, 'bundle.pem'), 'utf8').trim(), h.pki.root.cert.toString().trim());
    await h.server.setEntries([]);
    const d = captureIo();
    assert.is(await main(['workload', 'fetch', '--socket', h.socket], d), 1);
    assert.match(d.stderr[0] ?? '', /PERMISSION_DENIED/);
  } finally {
    await h.close();
  }
});

test.run();
