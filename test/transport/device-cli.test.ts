/**
 * `edgeward device token create` against an admin endpoint on a Unix socket that implements the
 * agent's `POST /v1/device-tokens` route with the real token store, then the token enrolls;
 * usage errors exit 2 and an unreachable agent is a typed error.
 */
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../runtime/cli/main.ts';
import { seededRandom } from '../../sim/random.ts';
import { enroll } from '../../transport/enroll/est-client.ts';
import { issueJoinToken } from '../../transport/enroll/join-token.ts';
import { captureIo } from '../helpers/cli-io.ts';
import { rig } from './setup.ts';

const r = await rig();
const sock = join(r.tmp, 'admin.sock');
const random = seededRandom('cli');
const admin = createServer((req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (d: Buffer) => parts.push(d));
  req.on('end', () => {
    if (req.method !== 'POST' || req.url !== '/v1/device-tokens') {
      res.writeHead(404).end();
      return;
    }
    const body = JSON.parse(Buffer.concat(parts).toString()) as { id: string; ttlMs: number };
    issueJoinToken({
      store: r.tokens,
      random,
      clock: r.clock,
      bundle: r.pki.bundle,
      deviceId: body.id,
      ttlMs: body.ttlMs,
    }).then(
      (t) => res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(t)),
      (err: Error) =>
        res.writeHead(400).end(JSON.stringify({ error: { code: 'ERR_BAD', message: err.message } })),
    );
  });
});
await new Promise<void>((res) => admin.listen(sock, res));

const io = (env: Record<string, string> = {}) => captureIo({ cwd: r.tmp, env });

test('token create prints a token that enrolls the device, finding the socket from the data dir', async () => {
  const cli = io({ EDGEWARD_DATA_DIR: r.tmp });
  assert.is(
    await main(['device', 'token', 'create', '--id', 'sensor-cli', '--ttl', '10m'], cli),
    0,
    cli.stderr.join('\n'),
  );
  const token = cli.stdout[0] as string;
  assert.match(token, /^ewt1\./);
  assert.match(cli.stderr[0] ?? '', /valid until/);
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const at = r.broker.addresses.enrollment as { port: number };
  const id = await enroll({
    host: '127.0.0.1',
    port: at.port,
    deviceId: 'sensor-cli',
    token,
    key,
    now: () => r.clock.now(),
  });
  assert.is(id.spiffeId, `${r.pki.gateway.id}/device/sensor-cli`);
});

test('usage mistakes exit 2; an unreachable agent exits 1 with its code', async () => {
  assert.is(await main(['device', 'token', 'create', '--socket', sock], io()), 2, 'missing --id');
  assert.is(await main(['device', 'token', 'create', '--id', 'a/b', '--socket', sock], io()), 2);
  assert.is(
    await main(['device', 'token', 'create', '--id', 'a', '--ttl', 'soon', '--socket', sock], io()),
    2,
  );
  assert.is(
    await main(['device', 'enroll', '--gateway', 'nohost', '--id', 'a', '--token', 'x', '--out', 'd'], io()),
    2,
  );
  assert.is(
    await main(['device', 'enroll', '--gateway', '127.0.0.1:1', '--token', 'x', '--out', 'd'], io()),
    2,
    'missing --id',
  );
  assert.is(await main(['device', 'frob'], io()), 2);
  const e = io();
  assert.is(
    await main(['device', 'token', 'create', '--id', 'a', '--socket', join(r.tmp, 'nope.sock')], e),
    1,
  );
  assert.match(e.stderr.join('\n'), /ERR_ADMIN_UNREACHABLE/);
  const bad = io();
  assert.is(
    await main(
      [
        'device',
        'enroll',
        '--gateway',
        `127.0.0.1:${r.broker.addresses.enrollment?.port}`,
        '--id',
        'a',
        '--token',
        'ewt1.x.y',
        '--out',
        'd',
      ],
      bad,
    ),
    1,
  );
  assert.match(bad.stderr.join('\n'), /ERR_ENROLL_TOKEN_INVALID/);
});

test.after(async () => {
  await new Promise((res) => admin.close(res));
  await r.close();
});
test.run();
