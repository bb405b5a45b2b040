/**
 * Enrollment end to end: a join token from the store, `edgeward device enroll` writing the files,
 * then the real mosquitto_pub/mosquitto_sub using those files against the broker (allowed and
 * refused topics); token misuse, a gateway with the wrong bundle, factory certificates, hostile
 * frames and the per-address rate limit.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../runtime/cli/main.ts';
import { enroll } from '../../transport/enroll/client.ts';
import { captureIo } from '../helpers/cli-io.ts';
import { makeCert } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';
import { rig } from './setup.ts';

const run = promisify(execFile);
const mfg = await makeCert({
  subject: 'CN=ACME devices root',
  ca: true,
  notBefore: Date.now() - 3600_000,
  notAfter: Date.now() + 86400_000,
});
const r = await rig({
  policy: {
    version: 1,
    rules: [
      {
        match: '{self}/device/*',
        clientId: 'any',
        maxConnections: 2,
        publish: ['devices/{device}/#'],
        subscribe: ['devices/{device}/#'],
      },
    ],
  },
  limits: { enrollPerMinute: 1000 },
  factory: { roots: [mfg.cert], idField: 'cn', allowList: ['factory-1'] },
});
const enrollAt = r.broker.addresses.enrollment as { host: string; port: number };
const key = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const now = () => r.clock.now();

test('edgeward device enroll writes files that mosquitto_pub and mosquitto_sub use as is', async () => {
  const token = await r.joinToken('sensor-1');
  const cli = captureIo({ cwd: r.tmp });
  const code = await main(
    ['device', 'enroll', '--gateway', `127.0.0.1:${enrollAt.port}`, '--token', token, '--out', 'dev1'],
    cli,
  );
  assert.is(code, 0, [...cli.stdout, ...cli.stderr].join('\n'));
  const dir = join(r.tmp, 'dev1');
  assert.is(statSync(join(dir, 'key.pem')).mode & 0o777, 0o600);
  assert.is(
    (readFileSync(join(dir, 'svid.pem'), 'utf8').match(/BEGIN CERTIFICATE/g) ?? []).length,
    2,
    'leaf + delegated CA',
  );
  const tls = [
    '--cafile',
    join(dir, 'bundle.pem'),
    '--cert',
    join(dir, 'svid.pem'),
    '--key',
    join(dir, 'key.pem'),
    '-h',
    '127.0.0.1',
    '-p',
    String(r.port),
  ];
  const sub = run('mosquitto_sub', [
    ...tls,
    '-i',
    'sensor-1-sub',
    '-t',
    'devices/sensor-1/#',
    '-C',
    '1',
    '-W',
    '10',
    '-q',
    '1',
  ]);
  await new Promise((res) => setTimeout(res, 500));
  await run('mosquitto_pub', [
    ...tls,
    '-i',
    'sensor-1',
    '-t',
    'devices/sensor-1/temp',
    '-m',
    'hello',
    '-q',
    '1',
  ]);
  assert.is((await sub).stdout.trim(), 'hello');
  // Refused: another device's topic, both ways.
  // mosquitto_sub 2.0.11 reports SUBACK 0x80 only in its debug output.
  const denied = await run('mosquitto_sub', [
    ...tls,
    '-d',
    '-i',
    'sensor-1-sub',
    '-t',
    'devices/sensor-2/#',
    '-C',
    '1',
    '-W',
    '2',
  ]).then(
    (o) => o.stdout + o.stderr,
    (e: { stdout: string; stderr: string }) => e.stdout + e.stderr,
  );
  assert.match(denied, /Subscribed \(mid: \d+\): 128/, denied);
  const refused = await run('mosquitto_pub', [
    ...tls,
    '-i',
    'sensor-1',
    '-t',
    'devices/sensor-2/x',
    '-m',
    'no',
    '-q',
    '1',
  ]).then(
    () => 'ok',
    (e: { code: number }) => `exit ${e.code}`,
  );
  assert.match(refused, /^exit [1-9]/);
  assert.ok(
    r.logger.lines.some((l) => l.msg === 'PUBLISH refused' && l.fields.topic === 'devices/sensor-2/x'),
  );
});

test('a join token is single use and expires', async () => {
  const token = await r.joinToken('sensor-2');
  await enroll({ host: '127.0.0.1', port: enrollAt.port, token, key: key(), now });
  await rejects(
    () => enroll({ host: '127.0.0.1', port: enrollAt.port, token, key: key(), now }),
    'ERR_ENROLL_TOKEN_INVALID',
  );
  const short = await r.joinToken('sensor-3', 1000);
  await r.clock.advance(2000);
  await rejects(
    () => enroll({ host: '127.0.0.1', port: enrollAt.port, token: short, key: key(), now }),
    'ERR_ENROLL_TOKEN_INVALID',
  );
  await rejects(
    () => enroll({ host: '127.0.0.1', port: enrollAt.port, token: 'ewt1.garbage', key: key(), now }),
    'ERR_ENROLL_TOKEN_INVALID',
  );
});

test('a token whose fingerprint is not the bundle root: the device refuses the gateway before sending, the token survives', async () => {
  const token = await r.joinToken('sensor-4');
  const parts = token.split('.');
  const forged = `${parts[0]}.${parts[1]}.${Buffer.alloc(32, 7).toString('base64url')}`;
  await rejects(
    () => enroll({ host: '127.0.0.1', port: enrollAt.port, token: forged, key: key(), now }),
    'ERR_ENROLL_GATEWAY_UNTRUSTED',
  );
  const ok = await enroll({ host: '127.0.0.1', port: enrollAt.port, token, key: key(), now });
  assert.is(ok.spiffeId, `${r.pki.gateway.id}/device/sensor-4`);
});

test('factory certificates: chained to the manufacturer root and on the allow-list', async () => {
  const fp = (await import('node:crypto')).createHash('sha256').update(r.pki.root.cert.raw).digest();
  const mk = async (cn: string, issuer = mfg) => {
    const c = await makeCert({
      subject: `CN=${cn}`,
      notBefore: Date.now() - 3600_000,
      notAfter: Date.now() + 3600_000,
      issuer,
      eku: null,
    });
    return { cert: c.cert.toString(), key: c.key, bundleFingerprint: fp };
  };
  const ok = await enroll({
    host: '127.0.0.1',
    port: enrollAt.port,
    factory: await mk('factory-1'),
    key: key(),
    now,
  });
  assert.is(ok.spiffeId, `${r.pki.gateway.id}/device/factory-1`);
  const f2 = await mk('factory-2');
  await rejects(
    () => enroll({ host: '127.0.0.1', port: enrollAt.port, factory: f2, key: key(), now }),
    'ERR_ENROLL_FACTORY_REFUSED',
  );
  const rogue = await makeCert({
    subject: 'CN=rogue',
    ca: true,
    notBefore: Date.now() - 3600_000,
    notAfter: Date.now() + 3600_000,
  });
  const f3 = await mk('factory-1', rogue);
  await rejects(
    () => enroll({ host: '127.0.0.1', port: enrollAt.port, factory: f3, key: key(), now }),
    'ERR_ENROLL_FACTORY_REFUSED',
  );
});

function rawEnroll(bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port: enrollAt.port, rejectUnauthorized: false }, () =>
      s.write(bytes),
    );
    s.on('data', () => {});
    s.on('error', () => {});
    s.on('close', () => resolve());
  });
}

test('hostile frames on the enrollment listener are refused and it keeps serving', async () => {
  await rawEnroll(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
  await rawEnroll(Buffer.from([0, 0, 0, 3, 0xff, 0xff, 0xff]));
  await rawEnroll(Buffer.concat([Buffer.from([0, 0, 0, 5]), Buffer.from('hello')]));
  assert.ok(
    r.logger.lines.filter((l) => l.msg === 'enrollment refused' && l.fields.code === 'ERR_ENROLL_PROTOCOL')
      .length >= 3,
  );
  const token = await r.joinToken('sensor-5');
  assert.ok(
    (await enroll({ host: '127.0.0.1', port: enrollAt.port, token, key: key(), now })).spiffeId.endsWith(
      '/sensor-5',
    ),
  );
});

test.after(() => r.close());
test.run();
