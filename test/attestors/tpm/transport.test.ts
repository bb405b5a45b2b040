/**
 * Transports and the execute path against misbehaving TPMs. swtpm never sends malformed bytes, so
 * a local Unix-socket server plays a broken TPM here: truncated, oversized and mis-tagged responses,
 * error codes of every format, RETRY warnings, silence. Every case ends in a typed error — never a
 * crash or a hang (timeouts run on the VirtualClock).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AnyCommand } from '../../../attestors/tpm/client/command.ts';
import { execute, parseResponse } from '../../../attestors/tpm/client/execute.ts';
import { Unseal } from '../../../attestors/tpm/commands/object.ts';
import { GetRandom } from '../../../attestors/tpm/commands/random.ts';
import { DeviceTransport } from '../../../attestors/tpm/transport/device.ts';
import { openTransport, parseTransportSpec } from '../../../attestors/tpm/transport/open.ts';
import { reliable } from '../../../attestors/tpm/transport/reliable.ts';
import { SocketTransport } from '../../../attestors/tpm/transport/socket.ts';
import { RC, TpmResponseError } from '../../../attestors/tpm/wire/rc.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { rejects } from '../../helpers/rejects.ts';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-transport-'));
let n = 0;

/** A fake TPM on a Unix socket answering each command with `reply(command, index)`. */
async function fakeTpm(
  reply: (cmd: Buffer, i: number, sock: Socket) => void,
): Promise<{ path: string; server: Server; commands: Buffer[] }> {
  const path = join(dir, `fake${n++}.sock`);
  const commands: Buffer[] = [];
  const server = createServer((sock) => {
    sock.on('data', (d) => {
      commands.push(d);
      reply(d, commands.length - 1, sock);
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { path, server, commands };
}

const hdr = (tag: number, size: number, rc: number): Buffer => {
  const b = Buffer.alloc(10);
  b.writeUInt16BE(tag, 0);
  b.writeUInt32BE(size, 2);
  b.writeUInt32BE(rc, 6);
  return b;
};
const okRandom = Buffer.concat([hdr(0x8001, 14, 0), Buffer.from('0002abcd', 'hex')]);
const close = (s: Server) => new Promise((r) => s.close(r));

/** Run `p` while advancing the virtual clock, until it settles. */
async function withTime<T>(clock: VirtualClock, p: Promise<T>, step = 50): Promise<T> {
  let done = false;
  const settled = p.finally(() => {
    done = true;
  });
  settled.catch(() => undefined); // observed below; keeps the rejection handled meanwhile
  for (let i = 0; !done && i < 2000; i++) {
    await clock.advance(step);
    await new Promise((r) => setImmediate(r));
  }
  return settled;
}

test('a response in several pieces is reassembled; one command at a time for concurrent callers', async () => {
  let busy = false;
  let overlapped = false;
  const f = await fakeTpm((_c, _i, sock) => {
    if (busy) overlapped = true;
    busy = true;
    sock.write(okRandom.subarray(0, 3));
    setImmediate(() => {
      busy = false;
      sock.write(okRandom.subarray(3));
    });
  });
  const t = reliable(new SocketTransport({ path: f.path }), { clock: new VirtualClock() });
  const results = await Promise.all([1, 2, 3].map(() => execute(t, GetRandom, { bytesRequested: 2 })));
  assert.ok(results.every((r) => Buffer.from(r.randomBytes).equals(Buffer.from('abcd', 'hex'))));
  assert.not.ok(overlapped, 'a second command was written before the first was answered');
  await t.close();
  await close(f.server);
});

test('oversized, impossible, truncated and mis-tagged responses are ERR_TPM_MALFORMED or ERR_TPM_TRANSPORT', async () => {
  const cases: [Buffer, string, boolean][] = [
    [Buffer.concat([okRandom, Buffer.alloc(4)]), 'ERR_TPM_MALFORMED', false], // more than declared
    [hdr(0x8001, 999_999, 0), 'ERR_TPM_MALFORMED', false], // impossible size
    [hdr(0x8001, 6, 0), 'ERR_TPM_MALFORMED', false], // below the header
    [Buffer.concat([hdr(0x00c4, 14, 0), Buffer.from('0002abcd', 'hex')]), 'ERR_TPM_MALFORMED', false], // TPM 1.2 tag
    [Buffer.concat([hdr(0x8002, 14, 0), Buffer.from('0002abcd', 'hex')]), 'ERR_TPM_MALFORMED', false], // sessions tag, none sent
    [Buffer.concat([hdr(0x8001, 14, 0), Buffer.from('0009abcd', 'hex')]), 'ERR_TPM_MALFORMED', false], // TPM2B past the end
    [Buffer.concat([hdr(0x8001, 16, 0), Buffer.from('0002abcd0000', 'hex')]), 'ERR_TPM_MALFORMED', false], // trailing bytes
    [okRandom.subarray(0, 12), 'ERR_TPM_TRANSPORT', true], // half a response, then the TPM goes away
  ];
  for (const [bytes, code, hangUp] of cases) {
    const f = await fakeTpm((_c, _i, sock) => {
      sock.write(bytes);
      if (hangUp) sock.end();
    });
    const t = reliable(new SocketTransport({ path: f.path }), { clock: new VirtualClock() });
    await rejects(() => execute(t, GetRandom, { bytesRequested: 2 }), code);
    await t.close();
    await close(f.server);
  }
});

test('response codes of each format decode with their index and retryability', async () => {
  const err = (rc: number, cmd: AnyCommand = GetRandom, sessions = 0) => {
    try {
      parseResponse(cmd, hdr(0x8001, 10, rc), sessions);
    } catch (e) {
      assert.instance(e, TpmResponseError);
      assert.is((e as TpmResponseError).code, 'ERR_TPM_RESPONSE');
      return (e as TpmResponseError).rc;
    }
    throw new Error('no error');
  };
  assert.equal([err(0x101).name, err(0x101).format], ['TPM_RC_FAILURE', 'zero']); // format zero
  assert.equal([err(0x2d5).code, err(0x2d5).parameter], [RC.SIZE, 2]); // format one, parameter
  assert.equal([err(0x98b).code, err(0x98b).session], [RC.HANDLE, 1]); // format one, session
  assert.equal([err(0x28b).code, err(0x28b).handle], [RC.HANDLE, 2]); // format one, handle
  assert.ok(err(0x922).warning && err(0x922).retryable); // warning
  assert.is(err(0x01e).format, 'tpm12'); // TPM 1.2 style
  assert.is(err(0x000b0143).layer, 0x0b); // kernel resource manager layer
  assert.not.ok(err(0x000b0922).retryable); // an RM-layer code is not a TPM warning
  assert.is(err(0x12f, Unseal, 1).name, 'TPM_RC_AUTH_UNAVAILABLE'); // 10-byte error for a 0x8002 command
});

test('RETRY, YIELDED and TESTING are resent with the identical bytes; other warnings are not', async () => {
  const warn = [0x922, 0x908, 0x90a];
  const f = await fakeTpm((_c, i, sock) => sock.write(i < 3 ? hdr(0x8001, 10, warn[i] as number) : okRandom));
  const clock = new VirtualClock();
  const t = reliable(new SocketTransport({ path: f.path }), { clock });
  const r = await withTime(clock, execute(t, GetRandom, { bytesRequested: 2 }));
  assert.equal(Buffer.from(r.randomBytes), Buffer.from('abcd', 'hex'));
  assert.is(f.commands.length, 4);
  assert.ok(f.commands.every((c) => c.equals(f.commands[0] as Buffer)));
  await t.close();
  await close(f.server);

  const g = await fakeTpm((_c, _i, sock) => sock.write(hdr(0x8001, 10, 0x921))); // LOCKOUT
  const t2 = reliable(new SocketTransport({ path: g.path }), { clock });
  const e = await rejects<TpmResponseError>(
    () => withTime(clock, execute(t2, GetRandom, { bytesRequested: 2 })),
    'ERR_TPM_RESPONSE',
  );
  assert.is(e.rc.code, RC.LOCKOUT);
  assert.is(g.commands.length, 1);
  await t2.close();
  await close(g.server);

  const h = await fakeTpm((_c, _i, sock) => sock.write(hdr(0x8001, 10, 0x922)));
  const t3 = reliable(new SocketTransport({ path: h.path }), { clock, retries: 3 });
  const e3 = await rejects<TpmResponseError>(
    () => withTime(clock, execute(t3, GetRandom, { bytesRequested: 2 })),
    'ERR_TPM_RESPONSE',
  );
  assert.ok(e3.rc.retryable);
  assert.is(h.commands.length, 4);
  await t3.close();
  await close(h.server);
});

test('a TPM that never answers times out (virtual clock); the next command reconnects', async () => {
  const f = await fakeTpm((_c, i, sock) => {
    if (i > 0) sock.write(okRandom);
  });
  const clock = new VirtualClock();
  const t = reliable(new SocketTransport({ path: f.path }), { clock, timeoutMs: 1000 });
  const pending = execute(t, GetRandom, { bytesRequested: 2 });
  const caught = pending.catch((e: unknown) => e);
  await clock.advance(999);
  await clock.advance(1);
  const e = await caught;
  assert.is((e as { code: string }).code, 'ERR_TPM_TIMEOUT');
  const r = await execute(t, GetRandom, { bytesRequested: 2 });
  assert.is(r.randomBytes.length, 2);
  await t.close();
  await close(f.server);
});

test('transport specs parse or fail with ERR_TPM_TRANSPORT_SPEC; unreachable peers are ERR_TPM_TRANSPORT', async () => {
  assert.equal(parseTransportSpec('swtpm:host=127.0.0.1,port=2321'), {
    kind: 'swtpm',
    data: { host: '127.0.0.1', port: 2321 },
    ctrl: { host: '127.0.0.1', port: 2322 },
  });
  assert.equal(parseTransportSpec('swtpm:path=/run/s.sock'), {
    kind: 'swtpm',
    data: { path: '/run/s.sock' },
    ctrl: { path: '/run/s.sock.ctrl' },
  });
  assert.equal(parseTransportSpec('device:/dev/tpmrm0'), { kind: 'device', path: '/dev/tpmrm0' });
  for (const bad of [
    '',
    'tpm',
    'device:relative',
    'swtpm:port=0',
    'swtpm:path=/a,port=1',
    'swtpm:weird=1',
    'sim:',
    'mssim:host=x',
  ])
    await rejects(() => parseTransportSpec(bad), 'ERR_TPM_TRANSPORT_SPEC');
  await rejects(() => openTransport('sim:/tmp/x'), 'ERR_TPM_TRANSPORT_SPEC');
  const t = await openTransport(`swtpm:path=${join(dir, 'nobody.sock')}`, {}, { clock: new VirtualClock() });
  await rejects(() => execute(t, GetRandom, { bytesRequested: 2 }), 'ERR_TPM_TRANSPORT');
  await t.close();
  await rejects(() => execute(t, GetRandom, { bytesRequested: 2 }), 'ERR_TPM_TRANSPORT');
});

test('the device transport reports a missing device as ERR_TPM_TRANSPORT', async () => {
  // No TPM character device exists on this machine; the success path cannot be exercised here.
  const d = new DeviceTransport(join(dir, 'tpmrm0'));
  await rejects(() => execute(d, GetRandom, { bytesRequested: 2 }), 'ERR_TPM_TRANSPORT');
  await d.close();
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
