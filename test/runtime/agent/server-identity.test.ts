/**
 * The gateway's local server identity on a virtual clock (issue 14 item 2): minted under the
 * delegated CA with the product's signer, re-minted at half-life, kept through the upstream
 * SVID's expiry, gone exactly at the CA's NotAfter (the budget's end), served again at once
 * after a restart past the SVID's end, and not re-minted while the clock is behind the floor.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { tpmCaKeys } from '../../../runtime/agent/ca-keys.ts';
import { AgentDeviceSigner, MAX_DEVICE_TTL_MS } from '../../../runtime/agent/device-signer.ts';
import { liveIdentity } from '../../../runtime/agent/identity.ts';
import { newP256Key } from '../../../runtime/agent/keys.ts';
import { ServerIdentity, serverIdentityOf } from '../../../runtime/agent/server-identity.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { verifyX509Svid } from '../../../runtime/spiffe/verify.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { createCsr } from '../../../runtime/svid/csr.ts';
import { createCaSigner, createSigner, spkiOf } from '../../../runtime/svid/signer.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { buildPki } from '../../helpers/pki.ts';
import { rejects } from '../../helpers/rejects.ts';
import { openSim } from '../../sim/tpm/harness.ts';
import { HOUR, harness, MIN } from './helpers/harness.ts';

const der = (k: import('node:crypto').KeyObject) => k.export({ type: 'pkcs8', format: 'der' });

/** A signer and server identity over the test PKI's gateway (SVID with DNS localhost, IP 127.0.0.1). */
async function pkiServer(o: { ttlMs?: number; caLifeMs?: number } = {}) {
  // Whole seconds: certificate times are encoded in seconds, so half-life falls on the millisecond.
  const clock = new VirtualClock(Math.floor(Date.now() / 1000) * 1000);
  const pki = await buildPki({ now: clock.now(), lifetimeMs: o.caLifeMs ?? 24 * HOUR });
  const live = liveIdentity({
    spiffeId: pki.gateway.id,
    svidChain: pki.gateway.chain.map((c) => c.raw),
    svidKey: der(pki.gateway.key),
    caChain: [pki.deviceCa.cert.raw, pki.root.cert.raw],
    caKey: der(pki.deviceCa.key),
    caKeyBackend: 'software',
    obtainedAt: clock.now(),
    via: 'attest',
    nextNonce: new Uint8Array(32),
  });
  const caIdentity = () => (clock.now() < live.ca.notAfter ? live : undefined);
  const signer = new AgentDeviceSigner({
    trustDomain: pki.trustDomain,
    random: seededRandom('server-identity'),
    caIdentity,
    clockTrusted: () => true,
    now: () => clock.now(),
    recordDevice: async () => {},
  });
  const logger = new MemoryLogger();
  const server = new ServerIdentity({
    signer,
    caIdentity,
    onIdentityChange: () => () => {},
    clock,
    now: () => clock.now(),
    logger,
    ...(o.ttlMs === undefined ? {} : { ttlMs: o.ttlMs }),
  });
  return { clock, pki, live, signer, server, logger };
}

test('server certificate: URI = gateway ID, the admitted DNS/IP names, serverAuth only, chain without the root', async () => {
  const { pki, server, clock } = await pkiServer();
  await server.start();
  const svid = server.getX509Svid();
  const leaf = svid.chain[0] as X509Certificate;
  assert.is(svid.spiffeId, pki.gateway.id);
  assert.is(leaf.subjectAltName, `URI:${pki.gateway.id}, DNS:localhost, IP Address:127.0.0.1`);
  assert.is(svid.chain.length, 2, 'leaf and delegated CA; the root is not served');
  assert.ok((svid.chain[1] as X509Certificate).fingerprint256 === pki.deviceCa.cert.fingerprint256);
  assert.is(svid.notAfter - clock.now() <= HOUR && svid.notAfter - clock.now() > HOUR - 1000, true);
  assert.ok(leaf.checkPrivateKey(svid.privateKey));
  assert.is(
    verifyX509Svid(svid.chain, { now: clock.now(), bundle: pki.bundle, purpose: 'server' }).spiffeId,
    pki.gateway.id,
  );
  await rejects(
    () => verifyX509Svid(svid.chain, { now: clock.now(), bundle: pki.bundle }),
    'ERR_SVID_INVALID',
  );
  // openssl, as mosquitto clients use it: server purpose, host name, chain to the bundle root.
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-server-id-'));
  writeFileSync(join(dir, 'leaf.pem'), leaf.toString());
  writeFileSync(join(dir, 'ca.pem'), (svid.chain[1] as X509Certificate).toString());
  writeFileSync(join(dir, 'root.pem'), pki.bundlePem);
  const out = execFileSync('openssl', [
    'verify',
    '-purpose',
    'sslserver',
    '-verify_hostname',
    'localhost',
    '-verify_ip',
    '127.0.0.1',
    '-CAfile',
    join(dir, 'root.pem'),
    '-untrusted',
    join(dir, 'ca.pem'),
    join(dir, 'leaf.pem'),
  ]).toString();
  assert.match(out, /leaf\.pem: OK/);
  const ext = execFileSync('openssl', [
    'x509',
    '-noout',
    '-ext',
    'extendedKeyUsage',
    '-in',
    join(dir, 'leaf.pem'),
  ]).toString();
  assert.match(ext, /TLS Web Server Authentication/);
  assert.not.match(ext, /Client/);
  server.stop();
});

test('under an issuer-style name-constrained CA (DNS/IP permitted for the admitted names) openssl verifies the server certificate', async () => {
  const now = Math.floor(Date.now() / 1000) * 1000;
  const td = 'fleet.example';
  const gwId = `spiffe://${td}/gateway/gw-9`;
  const names = ['gw-9.local', 'localhost', '192.168.1.10', '127.0.0.1'];
  const random = seededRandom('nc');
  const rootKey = newP256Key();
  const rootDer = createRootCa({
    trustDomain: td,
    privateKey: rootKey,
    notBefore: now - HOUR,
    notAfter: now + 24 * HOUR,
    random,
  });
  const issuer = createSigner({ certificate: rootDer, privateKey: rootKey, trustDomain: td, random });
  const svidKey = newP256Key();
  const caKey = newP256Key();
  const svid = issuer.sign({
    profile: 'svid',
    spiffeId: gwId,
    spki: spkiOf(svidKey),
    notBefore: now,
    notAfter: now + HOUR,
    serverNames: names,
  });
  const ca = issuer.sign({
    profile: 'device-ca',
    spiffeId: gwId,
    spki: spkiOf(caKey),
    notBefore: now,
    notAfter: now + 6 * HOUR,
    permittedServerNames: names,
  });
  const live = liveIdentity({
    spiffeId: gwId,
    svidChain: [svid],
    svidKey: der(svidKey),
    caChain: [ca],
    caKey: der(caKey),
    caKeyBackend: 'software',
    obtainedAt: now,
    via: 'attest',
    nextNonce: new Uint8Array(32),
  });
  const clock = new VirtualClock(now);
  const caIdentity = () => (clock.now() < live.ca.notAfter ? live : undefined);
  const signer = new AgentDeviceSigner({
    trustDomain: td,
    random,
    caIdentity,
    clockTrusted: () => true,
    now: () => clock.now(),
    recordDevice: async () => {},
  });
  const server = new ServerIdentity({
    signer,
    caIdentity,
    onIdentityChange: () => () => {},
    clock,
    now: () => clock.now(),
    logger: new MemoryLogger(),
  });
  await server.start();
  const leaf = server.getX509Svid().chain[0] as X509Certificate;
  assert.is(
    leaf.subjectAltName,
    `URI:${gwId}, DNS:gw-9.local, DNS:localhost, IP Address:192.168.1.10, IP Address:127.0.0.1`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-server-nc-'));
  writeFileSync(join(dir, 'leaf.pem'), leaf.toString());
  writeFileSync(join(dir, 'ca.pem'), new X509Certificate(ca).toString());
  writeFileSync(join(dir, 'root.pem'), new X509Certificate(rootDer).toString());
  const verify = (...extra: string[]) =>
    execFileSync(
      'openssl',
      [
        'verify',
        '-purpose',
        'sslserver',
        ...extra,
        '-CAfile',
        join(dir, 'root.pem'),
        '-untrusted',
        join(dir, 'ca.pem'),
        join(dir, 'leaf.pem'),
      ],
      { stdio: 'pipe' },
    ).toString();
  assert.match(verify('-verify_hostname', 'gw-9.local', '-verify_ip', '192.168.1.10'), /leaf\.pem: OK/);
  assert.throws(
    () => verify('-verify_hostname', 'other.local'),
    'a name the issuer did not admit does not verify',
  );
  server.stop();
});

test('the signer signs the server profile only for the CA’s own ID; device TTL bounds', async () => {
  const { pki, live } = await pkiServer();
  const signer = createCaSigner({
    certificate: live.ca.chainDer[0] as Uint8Array,
    key: live.ca.key,
    trustDomain: pki.trustDomain,
    random: seededRandom('x'),
    scope: `${pki.gateway.id}/device`,
    serverId: pki.gateway.id,
    profiles: ['svid', 'server'],
  });
  const spki = spkiOf(newP256Key());
  const req = { spki, notBefore: Date.now(), notAfter: Date.now() + HOUR };
  for (const id of [`${pki.gateway.id}/device/x`, pki.otherCa.id, `${pki.gateway.id}/workload/w`])
    await rejects(() => signer.issue({ ...req, profile: 'server', spiffeId: id }), 'ERR_SVID_ID_INVALID');
  await rejects(
    () => signer.issue({ ...req, profile: 'svid', spiffeId: pki.gateway.id }),
    'ERR_SVID_ID_INVALID',
  );
  assert.throws(() =>
    createCaSigner({
      certificate: live.ca.chainDer[0] as Uint8Array,
      key: live.ca.key,
      trustDomain: pki.trustDomain,
      random: seededRandom('x'),
      profiles: ['server'],
    }),
  );
  const host = {
    trustDomain: pki.trustDomain,
    random: seededRandom('ttl'),
    caIdentity: () => live,
    clockTrusted: () => true,
    now: () => Date.now(),
    recordDevice: async () => {},
  };
  assert.throws(() => new AgentDeviceSigner(host, 0), /ttl/);
  assert.throws(() => new AgentDeviceSigner(host, MAX_DEVICE_TTL_MS + 1), /ttl/);
  // 30 days asked, the CA (24 h) clamps it.
  const long = new AgentDeviceSigner(host, MAX_DEVICE_TTL_MS);
  const out = await long.signDevice({ deviceId: 'd1', csrDer: createCsr(newP256Key()) });
  assert.is(out.notAfter, live.ca.notAfter);
});

test('re-minted at half-life with a fresh key; the last one ends exactly at the CA; then nothing, said once', async () => {
  const { server, clock, live, logger } = await pkiServer({ caLifeMs: 3 * HOUR });
  const changes: number[] = [];
  server.onChange(() => changes.push(clock.now()));
  await server.start();
  const first = server.getX509Svid();
  await clock.advance(30 * MIN - 1);
  assert.is(server.getX509Svid(), first);
  await clock.advance(1);
  const second = server.getX509Svid();
  assert.is.not(second, first);
  assert.not.ok(second.privateKey.equals(first.privateKey), 'a fresh key each time');
  const caEnd = live.ca.notAfter;
  await clock.advance(caEnd - clock.now() - 1);
  const last = server.getX509Svid();
  assert.is(last.notAfter, caEnd, 'never past the CA');
  assert.ok(server.status().up);
  assert.is(server.status().budgetRemainingMs, 1);
  await clock.advance(1);
  await rejects(() => server.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  assert.is(changes[changes.length - 1], caEnd, 'listeners told exactly at the CA NotAfter');
  assert.equal(server.status(), { up: false, certNotAfter: undefined, stopsAt: caEnd, budgetRemainingMs: 0 });
  assert.is(logger.lines.filter((l) => l.fields.event === 'local.budget-ended').length, 1);
  await clock.advance(HOUR);
  assert.is(logger.lines.filter((l) => l.fields.event === 'local.budget-ended').length, 1, 'said once');
  server.stop();
});

test('agent: the upstream SVID expires, local service does not; the budget end stops it exactly', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } });
  await h.clock.advance(0);
  h.issuer.faults.set('*', 'down');
  const server = serverIdentityOf(h.agent, { clock: h.clock, logger: h.logger });
  const changes: number[] = [];
  server.onChange(() => changes.push(h.clock.now()));
  await server.start();
  const svidEnd = h.agent.svidSource.getX509Svid().notAfter;
  const caEnd = h.agent.status().deviceCa?.notAfter as number;
  assert.is(server.getX509Svid().spiffeId, h.agent.status().spiffeId);
  await h.clock.advance(svidEnd - h.clock.now());
  await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  const after = server.getX509Svid();
  assert.ok(after.notAfter > svidEnd, 'served past the upstream SVID');
  assert.ok(server.status().up);
  // Device renewal and enrollment keep signing under the CA.
  await h.agent.deviceSigner.signDevice({ deviceId: 's1', csrDer: createCsr(newP256Key()) });
  await h.clock.advance(caEnd - h.clock.now() - 1);
  assert.is(server.getX509Svid().notAfter, caEnd);
  await h.clock.advance(1);
  await rejects(() => server.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  await rejects(
    () => h.agent.deviceSigner.signDevice({ deviceId: 's2', csrDer: createCsr(newP256Key()) }),
    'ERR_SVID_UNAVAILABLE',
  );
  assert.ok(changes.includes(caEnd));
  assert.is(server.status().up, false);
  assert.ok(h.logger.lines.some((l) => l.fields.event === 'local.budget-ended'));
  server.stop();
  await h.agent.stop();
});

test('agent: a restart after the upstream SVID expired serves the local server identity at once', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } });
  await h.clock.advance(0);
  h.issuer.faults.set('*', 'down');
  const svidEnd = h.agent.svidSource.getX509Svid().notAfter;
  await h.clock.advance(svidEnd - h.clock.now() + 10 * MIN);
  // Power cut: a new process on the same store, the upstream still away.
  await h.restart({ clock: new VirtualClock(h.clock.now()) });
  await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
  const server = serverIdentityOf(h.agent, { clock: h.clock, logger: h.logger });
  await server.start();
  const svid = server.getX509Svid();
  assert.is(svid.spiffeId, h.agent.status().spiffeId);
  assert.ok(svid.notAfter > h.clock.now());
  assert.ok(server.status().up);
  server.stop();
  await h.agent.stop();
});

test('agent: a clock jump back keeps the current certificate and mints none until the clock is sane', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } });
  await h.clock.advance(0);
  h.issuer.faults.set('*', 'down');
  const server = serverIdentityOf(h.agent, { clock: h.clock, logger: h.logger });
  await server.start();
  await h.clock.advance(10 * MIN);
  const first = server.getX509Svid();
  const right = h.clock.now();
  h.clock.set(right - 3 * HOUR);
  await h.clock.advance(30 * MIN); // past the half-life timer, on the jumped-back clock
  assert.is(server.getX509Svid(), first, 'still served: judged at the time floor');
  assert.ok(
    h.logger.lines.some(
      (l) => l.fields.event === 'local.mint-failed' && l.fields.code === 'ERR_CLOCK_UNTRUSTED',
    ),
  );
  h.clock.set(right + 30 * MIN);
  await h.clock.advance(MIN); // the retry
  const next = server.getX509Svid();
  assert.is.not(next, first);
  const leaf = next.chain[0] as X509Certificate;
  assert.ok(Date.parse(leaf.validFrom) >= right, 'never minted with a time behind the floor');
  server.stop();
  await h.agent.stop();
});

test('the CA key in the TPM (simulator): the server certificate is signed by TPM2_Sign under the delegated CA', async () => {
  const sim = await openSim();
  const tpm = new TpmAttestor({
    transport: sim.tpm,
    random: seededRandom('server-tpm'),
    ownsTransport: false,
  });
  try {
    const h = await harness({ caKeys: tpmCaKeys(tpm) });
    await h.clock.advance(0);
    const live = h.agent.svidSource.current();
    assert.is(live?.ca.key.backend, 'tpm');
    const server = serverIdentityOf(h.agent, { clock: h.clock, logger: h.logger });
    await server.start();
    const [leaf, ca] = server.getX509Svid().chain as X509Certificate[];
    assert.ok(ca !== undefined && leaf?.verify(ca.publicKey), 'signed by the delegated CA');
    assert.equal(
      ca?.publicKey.export({ format: 'der', type: 'spki' }),
      live?.ca.key.spki,
      'whose key is the TPM key',
    );
    const bundle = h.agent.bundleSource.getBundleFor(h.issuer.trustDomain);
    assert.is(
      verifyX509Svid([leaf as X509Certificate, ca as X509Certificate], {
        now: h.clock.now(),
        bundle,
        purpose: 'server',
      }).spiffeId,
      live?.svid.spiffeId,
    );
    server.stop();
    await h.agent.stop();
  } finally {
    await sim.tpm.close();
  }
});

test.run();
