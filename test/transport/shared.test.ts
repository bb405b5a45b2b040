/**
 * Shared subscriptions (`$share/<group>/<filter>`). aedes 1.2 has no shared-subscription
 * delivery: it acknowledges such a SUBSCRIBE with the granted QoS and then delivers nothing to
 * the group. The first test pins that premise on a plain aedes (if a later aedes delivers, it
 * fails, and the refusal below can be revisited); the others check that edgeward refuses `$share`
 * loudly instead — SUBACK 0x80 with ERR_SHARED_SUBSCRIPTION_UNSUPPORTED in the log, for mqtt.js
 * and for the real mosquitto_sub — whatever the policy object says.
 */
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Issued, makeCert, writeIdentityFiles } from '../helpers/pki.ts';
import { rig } from './setup.ts';

const run = promisify(execFile);
const r = await rig({
  policy: {
    version: 1,
    rules: [
      { match: '{self}/device/*', publish: ['devices/{device}/#'], subscribe: ['devices/{device}/#'] },
      // Given in code (a file with $share does not load): the grant is still never honoured.
      {
        match: '{self}/svc/*',
        clientId: 'any',
        maxConnections: 4,
        subscribe: ['$share/+/devices/+/#', 'devices/+/#'],
      },
    ],
  },
});

async function worker(): Promise<Issued> {
  const c = await makeCert({
    subject: 'CN=worker',
    uris: [`${r.pki.gateway.id}/svc/worker`],
    notBefore: r.clock.now() - 60_000,
    notAfter: r.clock.now() + 3600_000,
    issuer: r.pki.root,
  });
  const id = `${r.pki.gateway.id}/svc/worker`;
  const pem = { cert: c.cert.toString(), key: c.key.export({ type: 'pkcs8', format: 'pem' }) as string };
  const svid = { spiffeId: id, chain: [c.cert], privateKey: c.key, notAfter: Date.parse(c.cert.validTo) };
  return { id, cert: c.cert, key: c.key, chain: [c.cert], pem, svid };
}

test('premise: plain aedes 1.2 acknowledges $share and delivers nothing to the group', async () => {
  const aedes = await Aedes.createBroker();
  const server = createServer((s) => aedes.handle(s));
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const url = `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`;
  const members = await Promise.all([0, 1].map((i) => mqtt.connectAsync(url, { clientId: `m${i}` })));
  const plain = await mqtt.connectAsync(url, { clientId: 'plain' });
  const got = [0, 0];
  let plainGot = 0;
  for (const [i, m] of members.entries()) {
    const granted = await m.subscribeAsync('$share/g/jobs/#', { qos: 1 });
    assert.is(granted[0]?.qos, 1, 'aedes grants the shared subscription');
    m.on('message', () => {
      got[i] = (got[i] ?? 0) + 1;
    });
  }
  await plain.subscribeAsync('jobs/#', { qos: 1 });
  const allPlain = new Promise<void>((res) =>
    plain.on('message', () => {
      if (++plainGot === 5) res();
    }),
  );
  const pub = await mqtt.connectAsync(url, { clientId: 'pub' });
  for (let i = 0; i < 5; i++) await pub.publishAsync('jobs/x', String(i), { qos: 1 });
  await allPlain; // the plain subscriber got all five: deliveries had every chance to happen
  await new Promise((res) => setImmediate(res));
  assert.equal(got, [0, 0], 'no member of the group received anything');
  for (const c of [...members, plain, pub]) await c.endAsync();
  await new Promise<void>((res) => aedes.close(() => server.close(() => res())));
});

test('edgeward refuses $share with SUBACK 0x80 and a logged code, even when the policy object names it', async () => {
  const w = await worker();
  const members = await Promise.all([0, 1].map((i) => r.connect(w, { clientId: `w${i}` })));
  for (const m of members) {
    const suback = new Promise<number[]>((res) =>
      m.on('packetreceive', (p) => {
        if (p.cmd === 'suback') res(p.granted as number[]);
      }),
    );
    m.subscribe(['$share/g/devices/s1/#', 'devices/s1/#'], { qos: 1 }, () => {});
    assert.equal(await suback, [128, 1], 'the shared filter refused, the plain one granted');
  }
  const refusals = r.logger.lines.filter(
    (l) => l.msg === 'SUBSCRIBE refused' && l.fields.code === 'ERR_SHARED_SUBSCRIPTION_UNSUPPORTED',
  );
  assert.is(refusals.length, 2);
  assert.is(refusals[0]?.fields.topic, '$share/g/devices/s1/#');
  // Each member still receives through its plain subscription: nothing was silently lost.
  const got = members.map((m) => new Promise((res) => m.once('message', (t) => res(t))));
  const dev = await r.connect(await r.pki.device('s1'));
  await dev.publishAsync('devices/s1/x', 'hello', { qos: 1 });
  assert.equal(await Promise.all(got), ['devices/s1/x', 'devices/s1/x']);
  for (const c of [...members, dev]) await c.endAsync();
});

test('a device under the default rules gets 0x80 for $share on its own subtree, also from mosquitto_sub', async () => {
  const dev = await r.pki.device('s2');
  const dir = join(r.tmp, 'share-s2');
  mkdirSync(dir, { recursive: true });
  const files = writeIdentityFiles(dir, dev, r.pki.bundlePem);
  // mosquitto_sub 2.0.11 reports SUBACK 0x80 only in its debug output.
  const out = await run('mosquitto_sub', [
    ...[
      '-h',
      '127.0.0.1',
      '-p',
      String(r.port),
      '--cafile',
      files.ca,
      '--cert',
      files.cert,
      '--key',
      files.key,
    ],
    ...['-d', '-i', 's2', '-t', '$share/g/devices/s2/#', '-C', '1', '-W', '2'],
  ]).then(
    (o) => o.stdout + o.stderr,
    (e: { stdout: string; stderr: string }) => e.stdout + e.stderr,
  );
  assert.match(out, /Subscribed \(mid: \d+\): 128/, out);
  assert.ok(
    r.logger.lines.some(
      (l) =>
        l.fields.code === 'ERR_SHARED_SUBSCRIPTION_UNSUPPORTED' && l.fields.topic === '$share/g/devices/s2/#',
    ),
  );
});

test.after(() => r.close());
test.run();
