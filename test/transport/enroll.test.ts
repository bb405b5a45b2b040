/**
 * Enrollment (EST) end to end: a join token from the store, `edgeward device enroll` writing the
 * files, then the real mosquitto_pub/mosquitto_sub using those files against the broker (allowed
 * and refused topics); token misuse, a gateway with the wrong bundle, factory certificates, a
 * refused CSR that leaves its token usable, racing redemptions, garbage streams with RSS bounded,
 * the time budget, revoked devices. (Each refusal's status: est-refusals.test.ts.)
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type ConnectionOptions, connect, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../runtime/cli/main.ts';
import { StaticRevocationSource } from '../../runtime/sources/static.ts';
import { VirtualClock } from '../../sim/clock/virtual-clock.ts';
import { enroll } from '../../transport/enroll/est-client.ts';
import { MAX_BODY_BYTES } from '../../transport/enroll/est-server.ts';
import { refusingRevoked } from '../../transport/enroll/revoked.ts';
import { captureIo } from '../helpers/cli-io.ts';
import { makeCert } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';
import { estCall } from './est-call.ts';
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
    [
      'device',
      'enroll',
      '--gateway',
      `127.0.0.1:${enrollAt.port}`,
      '--id',
      'sensor-1',
      '--token',
      token,
      '--out',
      'dev1',
    ],
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
  // mosquitto_sub -d prints "received SUBACK" once subscribed: the publish waits for that, not a
  // sleep (stdbuf -oL: a pipe would otherwise hold mosquitto's output until it exits).
  const sub = spawn('stdbuf', [
    '-oL',
    'mosquitto_sub',
    ...tls,
    '-d',
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
  let subOut = '';
  const subscribed = new Promise<void>((resolve, reject) => {
    sub.stdout.on('data', (d: Buffer) => {
      subOut += d.toString();
      if (/received SUBACK/i.test(subOut)) resolve();
    });
    sub.once('exit', (code) => reject(new Error(`mosquitto_sub exited ${code} before SUBACK: ${subOut}`)));
  });
  const subExit = new Promise<number | null>((resolve) => sub.once('exit', resolve));
  await subscribed;
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
  assert.is(await subExit, 0, subOut);
  assert.ok(subOut.split('\n').includes('hello'), subOut);
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
  const at = { host: '127.0.0.1', port: enrollAt.port, deviceId: 'sensor-2' };
  await enroll({ ...at, token, key: key(), now });
  await rejects(() => enroll({ ...at, token, key: key(), now }), 'ERR_ENROLL_TOKEN_INVALID');
  const short = await r.joinToken('sensor-3', 1000);
  await r.clock.advance(2000);
  await rejects(
    () => enroll({ ...at, deviceId: 'sensor-3', token: short, key: key(), now }),
    'ERR_ENROLL_TOKEN_INVALID',
  );
  await rejects(() => enroll({ ...at, token: 'ewt1.garbage', key: key(), now }), 'ERR_ENROLL_TOKEN_INVALID');
});

test('a token whose fingerprint is not the bundle root: the device refuses the gateway before sending, the token survives', async () => {
  const token = await r.joinToken('sensor-4');
  const parts = token.split('.');
  const forged = `${parts[0]}.${parts[1]}.${Buffer.alloc(32, 7).toString('base64url')}`;
  await rejects(
    () =>
      enroll({
        host: '127.0.0.1',
        port: enrollAt.port,
        deviceId: 'sensor-4',
        token: forged,
        key: key(),
        now,
      }),
    'ERR_ENROLL_GATEWAY_UNTRUSTED',
  );
  const ok = await enroll({
    host: '127.0.0.1',
    port: enrollAt.port,
    deviceId: 'sensor-4',
    token,
    key: key(),
    now,
  });
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

/** A client that keeps its side open after the gateway's FIN (Node honours the option; its types lack it). */
const halfOpen = (o: ConnectionOptions): ConnectionOptions =>
  ({ ...o, allowHalfOpen: true }) as ConnectionOptions;

test('a refused CSR (explicit EC curve parameters) does not burn the token: the same token enrolls afterwards', async () => {
  const token = await r.joinToken('sensor-6');
  const dir = r.tmp;
  const kf = join(dir, 'explicit.pem');
  execFileSync('openssl', [
    'ecparam',
    '-name',
    'prime256v1',
    '-param_enc',
    'explicit',
    '-genkey',
    '-noout',
    '-out',
    kf,
  ]);
  const csr = execFileSync('openssl', ['req', '-new', '-key', kf, '-subj', '/CN=x', '-outform', 'DER']);
  const a = await estCall(enrollAt.port, 'simpleenroll', { body: csr, basic: ['sensor-6', token] });
  assert.is(a.status, 400);
  assert.match(a.text, /^ERR_ENROLL_CSR_INVALID: /);
  assert.ok(
    r.logger.lines.some(
      (l) => l.msg === 'enrollment refused' && String(l.fields.reason).includes('ERR_CSR_EXPLICIT_CURVE'),
    ),
  );
  const at = { host: '127.0.0.1', port: enrollAt.port, deviceId: 'sensor-6' };
  const ok = await enroll({ ...at, token, key: key(), now });
  assert.ok(ok.spiffeId.endsWith('/device/sensor-6'));
  await rejects(() => enroll({ ...at, token, key: key(), now }), 'ERR_ENROLL_TOKEN_INVALID');
});

test('two enrollments racing with one token: exactly one gets a certificate', async () => {
  const token = await r.joinToken('sensor-7');
  const results = await Promise.allSettled(
    [0, 1, 2].map(() =>
      enroll({ host: '127.0.0.1', port: enrollAt.port, deviceId: 'sensor-7', token, key: key(), now }),
    ),
  );
  assert.is(results.filter((x) => x.status === 'fulfilled').length, 1);
  for (const x of results)
    if (x.status === 'rejected') assert.is((x.reason as { code?: string }).code, 'ERR_ENROLL_TOKEN_INVALID');
});

/**
 * A TLS connection that streams garbage until the gateway closes it (or `max` bytes went out):
 * `http` an enrollment request with a chunked body that never ends, else bytes that are not HTTP.
 */
function garbageStream(max: number, http: boolean): Promise<{ sent: number; closed: boolean }> {
  return new Promise((resolve) => {
    let sent = 0;
    const chunk = http
      ? Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(64 * 1024, 0x41), Buffer.from('\r\n')])
      : Buffer.alloc(64 * 1024, 0x41);
    const s: TLSSocket = connect(
      halfOpen({ host: '127.0.0.1', port: enrollAt.port, rejectUnauthorized: false }),
      () => {
        if (http)
          s.write(
            'POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: gw\r\nContent-Type: application/pkcs10\r\n' +
              'Authorization: Basic eDp5\r\nTransfer-Encoding: chunked\r\n\r\n',
          );
        const pump = (): void => {
          while (!s.destroyed && sent < max) {
            sent += chunk.length;
            if (!s.write(chunk)) {
              s.once('drain', pump);
              return;
            }
          }
          if (sent >= max) {
            s.destroy();
          }
        };
        pump();
      },
    );
    s.on('data', () => {});
    s.on('error', () => {});
    s.once('close', () => resolve({ sent, closed: sent < max }));
  });
}

test('garbage streamed on 4 enrollment connections: each is cut off near one frame, RSS stays bounded and an MQTT connect stays fast', async () => {
  const MAX = 64 * 1024 * 1024;
  const rss0 = process.memoryUsage().rss;
  const flood = Promise.all([0, 1, 2, 3].map((i) => garbageStream(MAX, i % 2 === 0)));
  const t0 = performance.now();
  const c = await r.connect(await r.pki.device('during-flood'));
  const connectMs = performance.now() - t0;
  c.end(true);
  const results = await flood;
  const grownMb = (process.memoryUsage().rss - rss0) / 1048576;
  console.log(
    `  4 garbage streams: cut off after ${results.map((x) => Math.round(x.sent / 1024)).join(', ')} KiB sent (body bound ${MAX_BODY_BYTES} B + socket buffers); RSS +${grownMb.toFixed(1)} MB; MQTT connect ${connectMs.toFixed(0)} ms`,
  );
  for (const x of results) assert.ok(x.closed, `a connection took ${x.sent} bytes without being closed`);
  assert.ok(grownMb < 40, `RSS grew ${grownMb.toFixed(1)} MB`);
  assert.ok(connectMs < 2000, `MQTT connect took ${connectMs} ms`);
  assert.ok(
    r.logger.lines.some(
      (l) =>
        l.msg === 'enrollment refused' && l.fields.code === 'ERR_ENROLL_BUDGET' && l.fields.status === 413,
    ),
  );
  assert.ok(r.logger.lines.some((l) => l.msg === 'enrollment refused' && l.fields.status === 400));
});

test('a connection that sends nothing after the handshake is closed at its time budget', async () => {
  const closed = new Promise<void>((resolve) => {
    const s = connect(halfOpen({ host: '127.0.0.1', port: enrollAt.port, rejectUnauthorized: false }), () => {
      // Once the gateway armed the connection's budget (its clock), let the time pass.
      const armed = (): void => {
        if (r.clock.pendingTimers().some((t) => t.name === 'enrollment-request'))
          void r.clock.advance(10_001);
        else setImmediate(armed);
      };
      armed();
    });
    s.on('error', () => {});
    s.once('end', () => resolve());
  });
  await closed;
  assert.ok(
    r.logger.lines.some(
      (l) =>
        l.msg === 'enrollment connection closed' &&
        l.fields.code === 'ERR_ENROLL_BUDGET' &&
        String(l.fields.reason).startsWith('no answer'),
    ),
  );
});

test('a revoked device id cannot enroll again, with a token or a factory certificate', async () => {
  const revoked = new StaticRevocationSource();
  const r2 = await rig((pki) => ({
    revocationSource: revoked,
    // The signer's clock a little behind the rig's (made just before): what it signs is never
    // "not valid yet" at the rig's time, whichever second the two were made in.
    deviceSigner: refusingRevoked(pki.signer(new VirtualClock(Date.now() - 2000)), revoked),
    factory: { roots: [mfg.cert], idField: 'cn', allowList: ['factory-9'] },
  }));
  try {
    const at = r2.broker.addresses.enrollment as { host: string; port: number };
    const gw = r2.pki.gateway.id;
    revoked.revoke({ spiffeIds: [`${gw}/device/gone-1`, `${gw}/device/factory-9`] });
    const token = await r2.joinToken('gone-1');
    await rejects(
      () =>
        enroll({
          host: '127.0.0.1',
          port: at.port,
          deviceId: 'gone-1',
          token,
          key: key(),
          now: () => r2.clock.now(),
        }),
      'ERR_ENROLL_DEVICE_REVOKED',
    );
    const fp = (await import('node:crypto')).createHash('sha256').update(r2.pki.root.cert.raw).digest();
    const c = await makeCert({
      subject: 'CN=factory-9',
      notBefore: Date.now() - 3600_000,
      notAfter: Date.now() + 3600_000,
      issuer: mfg,
      eku: null,
    });
    await rejects(
      () =>
        enroll({
          host: '127.0.0.1',
          port: at.port,
          factory: { cert: c.cert.toString(), key: c.key, bundleFingerprint: fp },
          key: key(),
          now: () => r2.clock.now(),
        }),
      'ERR_ENROLL_DEVICE_REVOKED',
    );
    // Another device on the same gateway still enrolls.
    const ok = await enroll({
      host: '127.0.0.1',
      port: at.port,
      deviceId: 'still-1',
      token: await r2.joinToken('still-1'),
      key: key(),
      now: () => r2.clock.now(),
    });
    assert.ok(ok.spiffeId.endsWith('/device/still-1'));
  } finally {
    await r2.close();
  }
});

test.after(() => r.close());
test.run();
