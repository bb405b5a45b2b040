/**
 * Issue 19 item 2, the single-process case: one issuer on LevelDB (classic-level on disk) with no
 * `ca.next` configured but a next-key source (what a PKCS#11 token's generator plugs into),
 * operated through its admin socket with the CLI: `ca rotate` publishes the generated CA in the
 * bundle at once and records when it signs; `ca show` / `ca rotate --status` print the state;
 * agents renewing through it are never refused and end under the next CA.
 */
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import type { CaKeyPair } from '../../../runtime/issuer/ca.ts';
import type { CaStatus } from '../../../runtime/issuer/ca-rotation.ts';
import { openLevelStore } from '../../../runtime/issuer/store-level.ts';
import { decodeBundle } from '../../../runtime/svid/bundle.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { TD } from './harness.ts';
import { MIN, rotationRig } from './rotation-rig.ts';

const chainsTo = (leaf: X509Certificate, ca: X509Certificate): boolean =>
  leaf.checkIssued(ca) && leaf.verify(ca.publicKey);

test('LevelDB, one process: ca rotate over the admin socket publishes a generated next CA at once and switches at the recorded time; agents never refused', async () => {
  const clock = new VirtualClock(Date.now());
  const rig = await rotationRig({ trustDomain: TD, clock });
  try {
    const socket = join(rig.dir, 'run', 'admin.sock');
    const generated: CaKeyPair[] = [];
    const r = await rig.replica(await openLevelStore(join(rig.dir, 'store')), {
      admin: { socket },
      nextCaSource: async () => {
        generated.push(rig.newCa(2));
        return generated[generated.length - 1] as CaKeyPair;
      },
    });
    const oldCa = new X509Certificate(rig.dev.ca.certificate);
    for (let i = 0; i < 2; i++) await rig.agent(r.issuer, [r.url]);
    await rig.step(3 * MIN);
    const seq0 = r.issuer.bundle().sequence;
    assert.is(decodeBundle(r.issuer.bundle().json).roots.length, 1);

    const cli = async (...args: string[]) => {
      const io = captureIo();
      const code = await main(['issuer', 'ca', ...args, '--socket', socket], io);
      return { code, out: io.stdout.join('\n'), err: io.stderr.join('\n') };
    };
    const early = await cli('rotate', '--at', new Date(clock.now() + MIN).toISOString());
    assert.is(early.code, 1);
    assert.match(early.err, /ERR_ISSUER_BAD_REQUEST: too early/);
    assert.is((await cli('rotate', '--now', '--after', '1m')).code, 2, 'one of --at, --after, --now');
    const rotated = await cli('rotate');
    assert.is(rotated.code, 0, rotated.err);
    assert.is(generated.length, 1, 'the next CA came from the key source');
    const newCa = new X509Certificate((generated[0] as CaKeyPair).certificate);
    assert.match(rotated.out, new RegExp(`next CA ${newCa.fingerprint256.replace(/:/g, '').toLowerCase()}`));
    // Published in the bundle at once (a new sequence), signing only later.
    const b1 = decodeBundle(r.issuer.bundle().json);
    assert.ok(b1.sequence > seq0);
    assert.ok(b1.roots.some((x) => x.raw.equals(newCa.raw)));
    assert.ok(r.issuer.caCertificate.equals(oldCa.raw));
    const shown = await cli('show');
    assert.is(shown.code, 0, shown.err);
    const status = JSON.parse(shown.out) as CaStatus;
    assert.equal(JSON.parse((await cli('rotate', '--status')).out), status);
    const activateAt = Date.parse(status.next?.activateAt as string);
    assert.is(activateAt, Date.parse(status.next?.publishedAt as string) + 5 * MIN, 'publication + 5 min');
    assert.equal(
      status.replicas.map((x) => [x.self, x.holdsActive, x.holdsNext]),
      [[true, true, true]],
    );
    const audit = (await r.issuer.auditEvents(0, 1000)).filter((e) => e.event === 'ca');
    assert.is(audit.at(-1)?.by, 'local-socket');

    for (let t = 0; t < 20 * MIN; t += 15_000) await rig.step(15_000);
    const switched = r.log.lines.filter((l) => l.msg === 'CA switched');
    assert.equal(
      switched.map((l) => l.at),
      [activateAt],
    );
    assert.ok(r.issuer.caCertificate.equals(newCa.raw));
    for (const g of rig.agents) {
      const log = g.h.logger.lines;
      assert.is(
        log.filter((l) => l.fields.event === 'identity.retry').length,
        0,
        `${g.name}: no failed rotation`,
      );
      assert.ok(g.served.length >= 4, `${g.name} renewed through the rotation`);
      const leaf = g.agent.svidSource.getX509Svid().chain[0] as X509Certificate;
      assert.ok(chainsTo(leaf, newCa), `${g.name} ends under the next CA`);
      assert.ok(
        g.agent.bundleSource.getBundleFor(TD).roots.some((x) => x.raw.equals(oldCa.raw)),
        'the old CA stays in the bundle meanwhile',
      );
    }
    const after = JSON.parse((await cli('show')).out) as CaStatus;
    assert.is(after.active.fingerprint, status.next?.fingerprint);
    assert.is(after.next, undefined);
    assert.equal(
      after.retired.map((x) => x.fingerprint),
      [status.active.fingerprint],
    );
  } finally {
    await rig.close();
  }
});

test.run();
