/**
 * Issue 19: `ca rotate` with the CA key in a PKCS#11 token shared by two replicas (SoftHSM2, one
 * token, two PostgreSQL store connections), live: no ca.next configured, no config edit, no
 * restart. The replica asked generates the next key in the token under a new label and signs
 * its certificate there; the other finds that key in the token by the certificate's public key
 * (its heartbeat says so) before the switch is scheduled; both switch at the recorded time and
 * 4 agents renew through it without a refusal or a failover. A replica started afterwards with
 * the old config finds the active key in the token and is ready.
 */
import { fork } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BEAT_CHANNEL, listBeats } from '../../../runtime/issuer/ca-replicas.ts';
import { generatePkcs11CaKey, openPkcs11CaKey } from '../../../runtime/issuer/pkcs11/key.ts';
import { findKeyByPoint, pkcs11Rotation, pointOf } from '../../../runtime/issuer/pkcs11/rotation.ts';
import { parsePkcs11Uri } from '../../../runtime/issuer/pkcs11/uri.ts';
import type { IssuerStore } from '../../../runtime/issuer/store.ts';
import { migratePostgresStore, openPostgresStore } from '../../../runtime/issuer/store-postgres.ts';
import { createRootCa, createRootCaWithKey } from '../../../runtime/svid/authority.ts';
import type { CaKey } from '../../../runtime/svid/ca-key.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { stopTestCluster, testDatabase } from '../../helpers/postgres.ts';
import { softHsmToken } from '../../helpers/softhsm.ts';
import { TD } from './harness.ts';
import { MIN, rotationRig } from './rotation-rig.ts';

test.after(() => stopTestCluster());

/** A CA whose key is a file's, not the token's. */
const rotationCa = (): Buffer =>
  createRootCa({
    trustDomain: TD,
    privateKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
    notBefore: Date.now() - MIN,
    notAfter: Date.now() + 1440 * MIN,
    random: seededRandom('file-ca'),
  });

const chainsTo = (leaf: X509Certificate, ca: X509Certificate): boolean =>
  leaf.checkIssued(ca) && leaf.verify(ca.publicKey);

/** `p`, failing after 20 s of real time: what it waits for moves with the token and the store, not the clock. */
function within<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`not within 20 s: ${what}`)), 20_000);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Resolves once `n` live replicas' heartbeats all hold the key of CA `print`: checked at each
 * heartbeat's notification (BEAT_CHANNEL), the event a replica that found a key writes.
 */
async function heartbeatsHold(store: IssuerStore, print: string, n: number): Promise<void> {
  let wake = () => {};
  const sub = await store.subscribe(BEAT_CHANNEL, () => wake());
  try {
    for (;;) {
      const woken = new Promise<void>((resolve) => {
        wake = resolve;
      });
      const beats = await listBeats(store);
      if (beats.length === n && beats.every((b) => b.holds.includes(print))) return;
      await woken;
    }
  } finally {
    await sub.close();
  }
}

const printOf = (x: X509Certificate): string => x.fingerprint256.replace(/:/g, '').toLowerCase();

test('ca rotate on one of two replicas sharing a token: next key made in the token, found by the other, switch without a refusal', async () => {
  const clock = new VirtualClock(Date.now());
  const rig = await rotationRig({ trustDomain: TD, clock });
  const t = softHsmToken();
  const db = await testDatabase('rotation_pkcs11');
  await migratePostgresStore({ url: db.url });
  const stores: IssuerStore[] = [];
  for (let i = 0; i < 3; i++) stores.push(await openPostgresStore({ url: db.url, poolSize: 4 }));
  const uri = t.uri('issuer-ca');
  const first = await generatePkcs11CaKey({ uri, module: t.module, pinFile: t.pinFile });
  const certificate = await createRootCaWithKey({
    trustDomain: TD,
    key: first,
    notBefore: clock.now() - MIN,
    notAfter: clock.now() + 400 * 1440 * MIN,
    random: seededRandom('pkcs11-rotation-ca'),
  });
  await first.close();
  const oldCa = new X509Certificate(certificate);
  // What from-config.ts composes for `ca.key: pkcs11:…`: the configured key, and rotation in its token.
  const replica = async (store: IssuerStore, n: number) => {
    const owned: CaKey[] = [];
    const key = await openPkcs11CaKey({ uri, module: t.module, pinFile: t.pinFile, certificate });
    owned.push(key);
    const r = pkcs11Rotation({
      uri,
      module: t.module,
      pinFile: t.pinFile,
      trustDomain: TD,
      clock,
      random: seededRandom(`pkcs11-rotation-${n}`),
      owned,
    });
    return rig.replica(store, {
      ca: { certificate, key },
      nextCaSource: r.nextSource,
      caKeyFor: r.keyFor,
      owned,
    });
  };
  try {
    const a = await replica(stores[0] as IssuerStore, 0);
    const b = await replica(stores[1] as IssuerStore, 1);
    for (let i = 0; i < 4; i++) await rig.agent(a.issuer, i % 2 === 0 ? [a.url, b.url] : [b.url, a.url]);
    await rig.step(0);
    for (const g of rig.agents) assert.ok(g.agent.status().serving, `${g.name} serving`);
    await rig.step(2 * MIN);

    // Live: neither replica has a ca.next; the rotation waits until b's heartbeat (an event) says it holds the new key.
    const status = await within('b finds the next key in the token', a.issuer.rotateCa('op-test', {}));
    const seen = await b.issuer.caStatus();
    assert.equal(
      seen.replicas.map((r) => r.holdsNext),
      [true, true],
      'b found the next key before the switch was scheduled',
    );
    const newCa = new X509Certificate(b.issuer.roots()[1]?.raw as Buffer);
    assert.is(status.next?.fingerprint, printOf(newCa));
    assert.match(newCa.subject, /#2/, 'the next generation in the subject');
    const found = await findKeyByPoint(
      { module: t.module, pinFile: t.pinFile },
      parsePkcs11Uri(uri),
      pointOf(newCa),
    );
    assert.match(found?.object ?? '', /^issuer-ca-\d{8}T\d{6}Z-[0-9a-f]{4}$/, 'a new label in the token');
    const activateAt = Date.parse(status.next?.activateAt as string);

    await rig.step(activateAt - clock.now() - 1);
    for (const r of [a, b]) assert.ok(r.issuer.caCertificate.equals(oldCa.raw), 'old CA until the time');
    await rig.step(1);
    for (const r of [a, b]) assert.ok(r.issuer.caCertificate.equals(newCa.raw), 'next CA from the time');
    for (let s = 0; s < 20 * MIN; s += 15_000) await rig.step(15_000);
    for (const g of rig.agents) {
      const log = g.h.logger.lines;
      assert.is(log.filter((l) => l.fields.event === 'identity.retry').length, 0, `${g.name}: no retry`);
      assert.equal(
        log.filter((l) => l.fields.event === 'upstream.failover').map((l) => l.fields),
        [],
        `${g.name}: no failover`,
      );
      const leaf = g.agent.svidSource.getX509Svid().chain[0] as X509Certificate;
      assert.ok(chainsTo(leaf, newCa), `${g.name} ends with an SVID from the token's next key`);
    }
    assert.equal(
      (await a.issuer.auditEvents(0, 10_000)).filter((e) => e.event === 'refuse'),
      [],
      'no refusal',
    );

    // A replica (re)started with the same config as before: the active key is found in the token.
    const c = await replica(stores[2] as IssuerStore, 2);
    await within('c holds the active key', heartbeatsHold(stores[2] as IssuerStore, printOf(newCa), 3));
    assert.equal(await c.issuer.readiness(), []);
    assert.ok(c.issuer.caCertificate.equals(newCa.raw));
  } finally {
    await rig.close();
  }
});

test('a replica in another process, its module loaded before the next key was made, finds that key in the token and signs with it', async () => {
  const t = softHsmToken();
  const uri = t.uri('issuer-ca');
  const opts = { module: t.module, pinFile: t.pinFile };
  const first = await generatePkcs11CaKey({ uri, ...opts });
  const clock = new VirtualClock(Date.now());
  const certificate = await createRootCaWithKey({
    trustDomain: TD,
    key: first,
    notBefore: clock.now() - MIN,
    notAfter: clock.now() + 400 * 1440 * MIN,
    random: seededRandom('pkcs11-peer-ca'),
  });
  await first.close();
  const peer = fork(fileURLToPath(new URL('./pkcs11-peer.ts', import.meta.url)), [], {
    execArgv: ['--import', 'tsx'],
    env: process.env, // the same SOFTHSM2_CONF: the same token directory
  });
  const ask = (m: object): Promise<{ ok: boolean; found?: boolean; signs?: boolean; error?: string }> =>
    new Promise((resolve) => {
      peer.once('message', (r) => resolve(r as { ok: boolean }));
      peer.send(m);
    });
  const owned: CaKey[] = [];
  try {
    const opened = await ask({
      op: 'open',
      uri,
      ...opts,
      certificate: Buffer.from(certificate).toString('base64'),
    });
    assert.ok(opened.ok, opened.error);
    const { nextSource } = pkcs11Rotation({
      uri,
      ...opts,
      trustDomain: TD,
      clock,
      random: seededRandom('peer'),
      owned,
    });
    const next = await nextSource(new X509Certificate(certificate));
    const r = await ask({ op: 'find', certificate: Buffer.from(next.certificate).toString('base64') });
    assert.equal(r, { ok: true, found: true, signs: true });
    // A certificate whose key is in no token: not found (and nothing opened).
    const other = rotationCa();
    assert.equal(await ask({ op: 'find', certificate: other.toString('base64') }), {
      ok: true,
      found: false,
    });
  } finally {
    peer.disconnect();
    for (const k of owned) await k.close();
  }
});

test.run();
