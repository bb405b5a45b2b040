/**
 * The delegated CA across the issuer's CA switch, on one virtual clock with real parts: an issuer
 * (LevelDB, served over HTTPS) whose old CA expires in 3 h rotates to a next CA with the same
 * subject name; two real agents renew through it, each serving its gateway SVID, its local
 * server certificate, a workload SVID and a device SVID (renewed at half-life). Every minute,
 * from before the switch to after the old root left the bundles, every served chain verifies
 * against the bundle each of its verifiers holds at that moment (the issuer, the other gateway,
 * the gateway's own devices and workloads). After the switch each agent renews its delegated CA
 * under the new root within the jittered window (not at the CA's half-life, 1.5 h), so every
 * chain it serves is under the new root within it; no person acts.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Agent } from '../../../runtime/agent/agent.ts';
import { underSigningRoot } from '../../../runtime/agent/root-switch.ts';
import { serverIdentityOf } from '../../../runtime/agent/server-identity.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { openLevelStore } from '../../../runtime/issuer/store-level.ts';
import type { X509Bundle } from '../../../runtime/sources/types.ts';
import { type SvidPurpose, verifyX509Svid } from '../../../runtime/spiffe/verify.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { decodeBundle } from '../../../runtime/svid/bundle.ts';
import { WorkloadSvids } from '../../../runtime/workload/svids.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { keyAndCsr, TD } from '../issuer/harness.ts';
import { MIN, type RigAgent, rotationRig } from '../issuer/rotation-rig.ts';

const HOUR = 60 * MIN;
const WINDOW = 20 * MIN;
const DEVICE_TTL = 30 * MIN;

const issuedBy = (c: X509Certificate, ca: X509Certificate): boolean =>
  c.checkIssued(ca) && c.verify(ca.publicKey);

interface Served {
  readonly g: RigAgent;
  readonly server: ReturnType<typeof serverIdentityOf>;
  readonly workloads: WorkloadSvids;
  device?: { chain: X509Certificate[]; refreshAt: number };
}

function workloadsOf(agent: Agent): WorkloadSvids {
  return new WorkloadSvids(
    {
      trustDomain: TD,
      random: seededRandom('workloads'),
      caIdentity: () => agent.caIdentity(),
      bundle: () => agent.bundleSource.getBundleFor(TD),
      clockTrusted: () => agent.clockTrusted(),
      now: () => agent.now(),
      onChange: (f) => agent.svidSource.onChange(f),
    },
    HOUR,
  );
}

test('across a CA switch (same subject name) the agents renew their delegated CA under the new root within the window; no served chain ever fails against a verifier’s bundle', async () => {
  const clock = new VirtualClock(Date.now());
  const rig = await rotationRig({ trustDomain: TD, clock });
  try {
    const t0 = clock.now();
    const oldKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const old = {
      privateKey: oldKey,
      certificate: createRootCa({
        trustDomain: TD,
        privateKey: oldKey,
        notBefore: t0 - MIN,
        notAfter: t0 + 3 * HOUR,
        random: seededRandom('old-ca'),
      }),
    };
    const nextKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const next = {
      privateKey: nextKey,
      certificate: createRootCa({
        trustDomain: TD,
        privateKey: nextKey,
        notBefore: t0 - MIN,
        notAfter: t0 + 400 * 24 * HOUR,
        random: seededRandom('next-ca'),
      }),
    };
    const r = await rig.replica(await openLevelStore(join(rig.dir, 'store')), {
      ca: old,
      nextCa: next,
      offlineBudgetMs: 24 * HOUR,
    });
    const served: Served[] = [];
    for (let i = 0; i < 2; i++) {
      const g = await rig.agent(r.issuer, [r.url], { rootSwitchWindowMs: WINDOW, deviceTtlMs: DEVICE_TTL });
      const server = serverIdentityOf(g.agent, { clock, logger: new MemoryLogger() });
      served.push({ g, server, workloads: workloadsOf(g.agent) });
    }
    await rig.step(0);
    for (const s of served) await s.server.start();
    const roots = decodeBundle(r.issuer.bundle().json).roots;
    assert.is(roots.length, 2, 'the next CA is published at start');
    const [oldCa, newCa] = roots as [X509Certificate, X509Certificate];
    assert.is(oldCa.subject, newCa.subject, 'two CAs with one subject name');

    const issuerBundle = (): X509Bundle => {
      const b = decodeBundle(r.issuer.bundle().json);
      return { trustDomain: TD, roots: b.roots, sequence: b.sequence };
    };
    const check = (
      label: string,
      chain: readonly X509Certificate[],
      bundle: X509Bundle,
      o: { purpose?: SvidPurpose; delegatedCa?: X509Certificate | undefined } = {},
    ) => {
      try {
        verifyX509Svid(chain, { now: clock.now(), bundle, ...o });
      } catch (err) {
        assert.unreachable(
          `${label} at +${(clock.now() - t0) / MIN} min against roots ${bundle.roots.map((x) => x.fingerprint256.slice(0, 8)).join(',')}: ${(err as Error).message}`,
        );
      }
    };
    let checks = 0;
    /** Everything served now, against every verifier's bundle now. */
    const checkAll = async () => {
      for (const s of served) {
        const a = s.g.agent;
        const own = a.bundleSource.getBundleFor(TD);
        const others = served.filter((o) => o !== s).map((o) => o.g.agent.bundleSource.getBundleFor(TD));
        const ca = a.caIdentity()?.ca.chain[0];
        if (s.device === undefined || clock.now() >= s.device.refreshAt) {
          const got = await a.deviceSigner.signDevice({ deviceId: 'sensor-1', csrDer: keyAndCsr().csr });
          const chain = got.chain.map((d) => new X509Certificate(Buffer.from(d)));
          s.device = { chain, refreshAt: clock.now() + DEVICE_TTL / 2 };
        }
        const gw = a.svidSource.getX509Svid().chain;
        const srv = s.server.getX509Svid().chain;
        const wl = (await s.workloads.get('web')).chain.map((d) => new X509Certificate(d));
        for (const [label, chain] of [
          ['gateway SVID', gw],
          ['device SVID', s.device.chain],
          ['workload SVID', wl],
        ] as const) {
          check(`${s.g.name} ${label} (issuer)`, chain, issuerBundle());
          for (const b of others) check(`${s.g.name} ${label} (other gateway)`, chain, b);
        }
        check(`${s.g.name} device SVID (own broker)`, s.device.chain, own, { delegatedCa: ca });
        check(`${s.g.name} workload SVID (own workloads)`, wl, own);
        check(`${s.g.name} local server certificate (its devices)`, srv, own, { purpose: 'server' });
        checks++;
      }
    };
    const stepChecked = async (ms: number) => {
      for (let t = 0; t < ms; t += MIN) {
        await rig.step(Math.min(MIN, ms - t));
        await checkAll();
      }
    };

    await stepChecked(2 * MIN);
    const status = await r.issuer.rotateCa('op-test', {});
    const activateAt = Date.parse(status.next?.activateAt as string);
    await stepChecked(activateAt - clock.now());
    for (const s of served)
      assert.ok(
        issuedBy(s.g.agent.caIdentity()?.ca.chain[0] as X509Certificate, oldCa),
        'old CA until the switch',
      );

    // The switch: within the window (and the feed's minute) every agent's delegated CA, and every
    // chain it serves from then on, is under the new root; the CA's half-life (1.5 h) is far off.
    await stepChecked(WINDOW + 2 * MIN);
    for (const s of served) {
      const a = s.g.agent;
      const live = a.caIdentity();
      assert.ok(live !== undefined);
      assert.ok(
        underSigningRoot(live.ca, a.bundleSource.getBundleFor(TD)),
        `${s.g.name} delegated CA under the new root`,
      );
      assert.ok(issuedBy(live.ca.chain[0] as X509Certificate, newCa), `${s.g.name} signed by the new CA`);
      assert.ok(!issuedBy(live.ca.chain[0] as X509Certificate, oldCa));
      const srv = s.server.getX509Svid().chain;
      assert.ok(
        issuedBy(srv.at(-1) as X509Certificate, newCa),
        `${s.g.name} server certificate under the new root`,
      );
      const lines = s.g.h.logger.lines.filter((l) => l.fields.event === 'identity.root-switch');
      assert.is(lines.length, 1, `${s.g.name}: the switch seen once`);
      const renewBy = Date.parse(lines[0]?.fields.renewBy as string);
      assert.ok(renewBy >= activateAt && renewBy < activateAt + WINDOW + MIN, 'jittered within the window');
      const renewed = s.g.h.logger.lines.filter(
        (l) =>
          l.fields.event === 'identity.rotated' &&
          l.fields.caRenewed === true &&
          Date.parse(l.fields.caNotAfter as string) > t0 + 3 * HOUR,
      );
      assert.ok(renewed.length >= 1, `${s.g.name}: a CA renewal under the new CA`);
    }
    const drawn = served.map(
      (s) => s.g.h.logger.lines.find((l) => l.fields.event === 'identity.root-switch')?.fields.renewBy,
    );
    assert.is.not(drawn[0], drawn[1], 'the fleet does not renew at one instant');

    // On to the old CA's end: it leaves the bundle (its NotAfter bounds its retirement) and nothing breaks.
    const until = Date.parse((await r.issuer.caStatus()).retired[0]?.until as string);
    assert.is(until, Date.parse(oldCa.validTo));
    await stepChecked(until - clock.now() + MIN);
    await r.issuer.prune();
    await stepChecked(3 * MIN);
    assert.equal(
      issuerBundle().roots.map((x) => x.fingerprint256),
      [newCa.fingerprint256],
    );
    for (const s of served) {
      assert.equal(
        s.g.agent.bundleSource.getBundleFor(TD).roots.map((x) => x.fingerprint256),
        [newCa.fingerprint256],
        `${s.g.name} holds the new root only`,
      );
      const log = s.g.h.logger.lines;
      assert.is(
        log.filter((l) => l.fields.event === 'identity.retry').length,
        0,
        `${s.g.name}: no failed rotation`,
      );
      assert.is(log.filter((l) => l.fields.event === 'identity.halted').length, 0);
    }
    assert.ok(checks > 300, `checked every minute (${checks})`);
    for (const s of served) s.server.stop();
  } finally {
    await rig.close();
  }
});

test.run();
