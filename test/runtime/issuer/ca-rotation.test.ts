/**
 * Issue 19 item 2: CA rotation across replicas at a time recorded in the database. Two issuer
 * replicas on one PostgreSQL database (each its own pool, served over HTTPS) and real agents
 * renewing through them on one virtual clock: `ca rotate` on one replica records when the next
 * CA signs; both replicas switch at that time by their own clocks (no restart); no agent is ever
 * refused; every agent ends with an SVID from the next CA; the old CA leaves the bundle once what
 * it signed has expired. A replica that lacks the next key blocks the scheduling while it is live,
 * and one that joins afterwards refuses to sign at the switch (503 ERR_ISSUER_CA_INVALID, not
 * ready) while agents fail over to a replica that has the key.
 */
import { X509Certificate } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Issuer } from '../../../runtime/issuer/issuer.ts';
import type { IssuerStore } from '../../../runtime/issuer/store.ts';
import { migratePostgresStore, openPostgresStore } from '../../../runtime/issuer/store-postgres.ts';
import { decodeBundle } from '../../../runtime/svid/bundle.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { stopTestCluster, testDatabase } from '../../helpers/postgres.ts';
import { rejects } from '../../helpers/rejects.ts';
import { keyAndCsr, TD } from './harness.ts';
import { MIN, rotationRig } from './rotation-rig.ts';

test.after(() => stopTestCluster());

const chainsTo = (leaf: X509Certificate, ca: X509Certificate): boolean =>
  leaf.checkIssued(ca) && leaf.verify(ca.publicKey);

async function pgStores(label: string, n: number): Promise<{ url: string; stores: IssuerStore[] }> {
  const db = await testDatabase(label);
  await migratePostgresStore({ url: db.url });
  const stores: IssuerStore[] = [];
  for (let i = 0; i < n; i++) stores.push(await openPostgresStore({ url: db.url, poolSize: 4 }));
  return { url: db.url, stores };
}

test('two replicas on PostgreSQL switch to the next CA at the recorded time; 4 agents renewing through it are never refused', async () => {
  const clock = new VirtualClock(Date.now());
  const rig = await rotationRig({ trustDomain: TD, clock });
  const { url, stores } = await pgStores('rotation', 2);
  try {
    const next = rig.newCa(2);
    const oldCa = new X509Certificate(rig.dev.ca.certificate);
    const newCa = new X509Certificate(next.certificate);
    const newPrint = newCa.fingerprint256.replace(/:/g, '').toLowerCase();
    // ca.next configured on every replica (the file-key way): published in the bundle at start.
    const a = await rig.replica(stores[0] as IssuerStore, { nextCa: next });
    const b = await rig.replica(stores[1] as IssuerStore, { nextCa: next });
    for (let i = 0; i < 4; i++) await rig.agent(a.issuer, i % 2 === 0 ? [a.url, b.url] : [b.url, a.url]);
    await rig.step(0);
    for (const g of rig.agents) assert.ok(g.agent.status().serving, `${g.name} serving`);
    await rig.step(2 * MIN);

    // A replica without the next key, alive: the switch is refused, naming it.
    const keylessStore = await openPostgresStore({ url, poolSize: 2 });
    const keyless = await Issuer.create({
      trustDomain: TD,
      store: keylessStore,
      ca: rig.dev.ca,
      clock,
      random: seededRandom('keyless'),
      methods: { joinToken: { enabled: true } },
    });
    const refused = await rejects(() => a.issuer.rotateCa('op-test', {}), 'ERR_ISSUER_CA_KEY_MISSING');
    assert.match(refused.message, /replicas without the next CA key/);
    await keyless.close();
    await keylessStore.close();
    // Too early for the bundle to have reached every verifier.
    await rejects(() => a.issuer.rotateCa('op-test', { afterMs: MIN }), 'ERR_ISSUER_BAD_REQUEST');

    const status = await a.issuer.rotateCa('op-test', {});
    const activateAt = Date.parse(status.next?.activateAt as string);
    assert.ok(activateAt >= clock.now() + 2 * MIN, 'published at start + 5 min, not before');
    assert.equal((await b.issuer.caStatus()).next?.activateAt, status.next?.activateAt, 'one recorded time');
    const audit = (await b.issuer.auditEvents(0, 1000)).filter((e) => e.event === 'ca');
    assert.is(audit.at(-1)?.by, 'op-test');
    assert.match(audit.at(-1)?.detail ?? '', new RegExp(status.next?.activateAt as string));

    // Until the recorded time both sign with the old CA; every agent fetched the bundle with the next.
    await rig.step(activateAt - clock.now() - 1);
    for (const r of [a, b]) assert.ok(r.issuer.caCertificate.equals(oldCa.raw), 'old CA until the time');
    for (const g of rig.agents) {
      const roots = g.agent.bundleSource.getBundleFor(TD).roots;
      assert.ok(
        roots.some((x) => x.raw.equals(newCa.raw)),
        `${g.name} has the next CA before the switch`,
      );
    }
    // The time comes with no timer run and no store traffic: each replica's own clock decides.
    clock.set(activateAt);
    for (const r of [a, b])
      assert.ok(r.issuer.caCertificate.equals(newCa.raw), 'the next CA signs from the recorded time');
    await rig.step(0);
    for (const r of [a, b]) {
      const switched = r.log.lines.filter((l) => l.msg === 'CA switched');
      assert.equal(
        switched.map((l) => [l.at, l.fields.activateAt]),
        [[activateAt, status.next?.activateAt]],
        'switched once, at the recorded time, from the schedule (not from a store write or a restart)',
      );
    }
    assert.is(a.issuer.bundle().json, b.issuer.bundle().json, 'one bundle');
    assert.ok(decodeBundle(a.issuer.bundle().json).roots[0]?.raw.equals(newCa.raw), 'the signing CA first');

    // Agents keep renewing through and past the switch: two SVID lifetimes.
    for (let t = 0; t < 20 * MIN; t += 15_000) await rig.step(15_000);
    for (const g of rig.agents) {
      const log = g.h.logger.lines;
      assert.is(
        log.filter((l) => l.fields.event === 'identity.retry').length,
        0,
        `${g.name}: no failed rotation`,
      );
      assert.equal(
        log.filter((l) => l.fields.event === 'upstream.failover').map((l) => l.fields),
        [],
        `${g.name}: no failover`,
      );
      assert.ok(g.served.length >= 4, `${g.name} renewed through the rotation (${g.served.length})`);
      for (const s of g.served) {
        // Signed 30 s before NotBefore + 30 s, in whole seconds: old CA before the switch, next after.
        const signedAt = Date.parse(s.leaf.validFrom) + 30_000;
        if (signedAt + 1000 <= activateAt) assert.ok(chainsTo(s.leaf, oldCa), `${g.name} old CA before`);
        else if (signedAt >= activateAt) assert.ok(chainsTo(s.leaf, newCa), `${g.name} next CA after`);
      }
      const leaf = g.agent.svidSource.getX509Svid().chain[0] as X509Certificate;
      assert.ok(chainsTo(leaf, newCa), `${g.name} ends with an SVID from the next CA`);
    }
    const events = await a.issuer.auditEvents(0, 10_000);
    assert.equal(
      events.filter((e) => e.event === 'refuse'),
      [],
      'no refusal recorded by either replica',
    );
    const written = events.filter((e) => e.event === 'ca' && e.detail?.endsWith('(scheduled switch)'));
    assert.equal(
      written.map((e) => e.detail),
      [`CA ${newPrint} signs from ${status.next?.activateAt} (scheduled switch)`],
      'the switch is audited once, by the replica that wrote it down',
    );

    // The old CA leaves the bundle once everything it signed has expired, on both replicas.
    for (const g of rig.agents) await g.agent.stop();
    const until = Date.parse((await a.issuer.caStatus()).retired[0]?.until as string);
    const lastOld = Math.max(
      ...rig.agents
        .flatMap((g) => g.served.filter((s) => chainsTo(s.leaf, oldCa)))
        .map((s) => Date.parse(s.leaf.validTo)),
    );
    assert.ok(until >= lastOld, 'kept at least until its last SVID expires');
    clock.set(until - 1000);
    await a.issuer.prune();
    assert.is(decodeBundle(b.issuer.bundle().json).roots.length, 2);
    clock.set(until + 1000);
    assert.ok(await a.issuer.prune());
    const seq = a.issuer.bundle().sequence;
    await b.issuer.whenBundleSequence(seq);
    const roots = decodeBundle(b.issuer.bundle().json).roots;
    assert.equal(
      roots.map((r) => r.fingerprint256),
      [newCa.fingerprint256],
    );
  } finally {
    await rig.close();
  }
});

test('a replica that lacks the next key at the switch answers 503 ERR_ISSUER_CA_INVALID and is not ready; agents fail over without a refusal', async () => {
  const clock = new VirtualClock(Date.now());
  const rig = await rotationRig({ trustDomain: TD, clock });
  const { stores } = await pgStores('rotation_keyless', 2);
  try {
    const next = rig.newCa(2);
    const a = await rig.replica(stores[0] as IssuerStore, { nextCa: next });
    const status = await a.issuer.rotateCa('op-test', {});
    const activateAt = Date.parse(status.next?.activateAt as string);
    // Joins after the scheduling, configured without ca.next: it serves until the switch.
    const c = await rig.replica(stores[1] as IssuerStore);
    assert.ok(c.log.lines.some((l) => l.msg.startsWith('a CA switch is scheduled to a CA whose key')));
    const agent = await rig.agent(a.issuer, [c.url, a.url]);
    await rig.step(0);
    assert.is(agent.agent.status().upstream.endpoint, c.url, 'attested through the keyless replica');
    assert.equal(await c.issuer.readiness(), []);
    await rig.step(activateAt - clock.now());
    const reasons = await c.issuer.readiness();
    assert.ok(
      reasons.some((r) => r.startsWith('ca: ERR_ISSUER_CA_INVALID this replica does not hold')),
      reasons.join('; '),
    );
    const peer = {
      address: '10.0.0.9',
      peerCertificate: agent.agent.svidSource.getX509Svid().chain[0]?.raw as Uint8Array,
    };
    const rb = await c.issuer.renewBegin(peer);
    await rejects(
      () => c.issuer.renewFinish({ sessionId: rb.sessionId, csr: keyAndCsr().csr }, peer),
      'ERR_ISSUER_CA_INVALID',
    );
    for (let t = 0; t < 12 * MIN; t += 15_000) await rig.step(15_000);
    const log = agent.h.logger.lines;
    assert.is(log.filter((l) => l.fields.event === 'identity.retry').length, 0, 'no failed rotation');
    const failovers = log.filter((l) => l.fields.event === 'upstream.failover');
    assert.ok(failovers.length > 0, 'the keyless replica was skipped');
    assert.equal([...new Set(failovers.map((l) => l.fields.code))], ['ERR_UPSTREAM_UNAVAILABLE']);
    const leaf = agent.agent.svidSource.getX509Svid().chain[0] as X509Certificate;
    assert.ok(chainsTo(leaf, new X509Certificate(next.certificate)), 'renewed by the replica with the key');
  } finally {
    await rig.close();
  }
});

test.run();
