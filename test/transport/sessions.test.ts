/** Session lifetime: expiry on the virtual clock, revocation, broker certificate rotation, policy reload. */
import { connect } from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { normalizeSerial } from '../../runtime/spiffe/cert-facts.ts';
import { DEFAULT_POLICY } from '../../transport/policy/schema.ts';
import { closed, connectFailure, nextMessage, rig } from './setup.ts';

const r = await rig();
const MIN = 60_000;

test('a session is closed when its certificate expires (virtual clock, no sleeping)', async () => {
  const dev = await r.pki.device('short', { notAfter: r.clock.now() + 10 * MIN });
  const c = await r.connect(dev);
  const gone = closed(c);
  await r.clock.advance(9 * MIN);
  assert.ok(c.connected, 'still connected before NotAfter');
  await r.clock.advance(MIN + 1000);
  await gone;
  assert.ok(
    r.logger.lines.some(
      (l) => l.msg === 'session closed: certificate expired' && l.fields.spiffeId === dev.id,
    ),
  );
  assert.is(await connectFailure(r.port, dev, r.pki.bundlePem), 'closed', 'and refused afterwards');
  assert.is(
    r.logger.lines.findLast((l) => l.msg === 'client certificate refused')?.fields.code,
    'ERR_SVID_EXPIRED',
  );
});

test('revoking a device ID or a serial closes its live session and refuses it afterwards', async () => {
  const a = await r.pki.device('rev-a');
  const b = await r.pki.device('rev-b');
  const ca = await r.connect(a);
  const cb = await r.connect(b);
  const goneA = closed(ca);
  r.revocations.revoke({ spiffeIds: [a.id] });
  await goneA;
  assert.ok(cb.connected, 'the other device stays');
  const goneB = closed(cb);
  r.revocations.revoke({ serials: [normalizeSerial(b.cert.serialNumber)] });
  await goneB;
  for (const who of [a, b]) {
    const before = r.logger.lines.length;
    assert.is(await connectFailure(r.port, who, r.pki.bundlePem), 'closed');
    const refused = r.logger.lines.slice(before).find((l) => l.msg === 'client certificate refused');
    assert.is(refused?.fields.code, 'ERR_SVID_REVOKED', who.id);
  }
});

function serverSerial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca, rejectUnauthorized: true }, () => {
      resolve(s.getPeerX509Certificate()?.serialNumber ?? '');
      s.destroy();
    });
    s.once('error', reject);
  });
}

test('rotating the gateway SVID swaps the server certificate without dropping a connection', async () => {
  const dev = await r.pki.device('rot');
  const c = await r.connect(dev);
  await c.subscribeAsync('devices/rot/#', { qos: 1 });
  assert.is(await serverSerial(r.port, r.pki.bundlePem), r.pki.gateway.cert.serialNumber);
  const next = await r.pki.gatewaySvid();
  r.svids.set(next.svid);
  assert.is(await serverSerial(r.port, r.pki.bundlePem), next.cert.serialNumber);
  assert.is(
    await serverSerial(r.broker.addresses.enrollment?.port ?? 0, r.pki.bundlePem),
    next.cert.serialNumber,
  );
  assert.ok(c.connected, 'the existing connection survived');
  const got = nextMessage(c, 'devices/rot/x');
  await c.publishAsync('devices/rot/x', 'after', { qos: 1 });
  assert.is((await got).toString(), 'after');
  await c.endAsync();
});

test('an expired gateway SVID is never presented: connections are refused until the next rotation', async () => {
  const dev = await r.pki.device('exp-gw');
  const c = await r.connect(dev);
  const short = await r.pki.gatewaySvid({ notAfter: r.clock.now() + 30 * MIN });
  r.svids.set(short.svid);
  assert.is(await serverSerial(r.port, r.pki.bundlePem), short.cert.serialNumber);
  const enrollPort = r.broker.addresses.enrollment?.port ?? 0;
  const before = r.logger.lines.length;
  // The static source does not announce the expiry: the listener judges it at each connection.
  await r.clock.advance(30 * MIN + 1000);
  for (const port of [r.port, enrollPort]) {
    const err = await serverSerial(port, r.pki.bundlePem).then(
      (serial): NodeJS.ErrnoException => assert.unreachable(`served ${serial} after its NotAfter`) as never,
      (e: NodeJS.ErrnoException) => e,
    );
    assert.match(String(err.code), /^ECONNRESET$|^EPIPE$/);
  }
  const refused = r.logger.lines.slice(before).filter((l) => l.fields.code === 'ERR_SVID_UNAVAILABLE');
  assert.equal(
    refused.map((l) => l.msg),
    ['gateway SVID expired: new connections refused until it rotates'],
    'logged once, with its code',
  );
  assert.ok(c.connected, 'a live session stays');
  // A source that reports the expiry (the agent's does) is heard at once, not at the next connection.
  r.svids.set(short.svid);
  assert.ok(
    r.logger.lines.some(
      (l) => l.msg === 'broker certificate not rotated' && l.fields.code === 'ERR_SVID_UNAVAILABLE',
    ),
  );
  const next = await r.pki.gatewaySvid();
  r.svids.set(next.svid);
  assert.is(await serverSerial(r.port, r.pki.bundlePem), next.cert.serialNumber);
  assert.is(await serverSerial(enrollPort, r.pki.bundlePem), next.cert.serialNumber);
  await c.endAsync();
});

test('a policy reload applies to live sessions: revoked grants close them, narrower grants stop delivery', async () => {
  const dev = await r.pki.device('pol');
  const c = await r.connect(dev);
  await c.subscribeAsync('devices/pol/#', { qos: 1 });
  await r.broker.reloadPolicy({
    version: 1,
    rules: [
      { match: '{self}/device/*', publish: ['devices/{device}/#'], subscribe: ['devices/{device}/in/#'] },
    ],
  });
  assert.ok(c.connected);
  const received: string[] = [];
  c.on('message', (t) => received.push(t));
  const got = nextMessage(c, 'devices/pol/in/1');
  await c.publishAsync('devices/pol/out', 'x', { qos: 1 });
  await c.publishAsync('devices/pol/in/1', 'y', { qos: 1 });
  await got;
  assert.equal(received, ['devices/pol/in/1'], 'devices/pol/out is no longer delivered');
  const gone = closed(c);
  await r.broker.reloadPolicy({ version: 1, rules: [] });
  await gone;
  await r.broker.reloadPolicy(DEFAULT_POLICY);
});

test.after(() => r.close());
test.run();
