import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Agent } from '../../../runtime/agent/agent.ts';
import type { RotationStep } from '../../../runtime/agent/exchange.ts';
import { newP256Key } from '../../../runtime/agent/keys.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import type { X509Svid } from '../../../runtime/sources/types.ts';
import { keyFileProtector } from '../../../runtime/store/key-file.ts';
import { type LevelDb, SealedStore } from '../../../runtime/store/sealed-store.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { testSeed } from '../../helpers/seed.ts';
import { FakeIssuer } from './helpers/fake-issuer.ts';
import { HOUR, harness, MIN } from './helpers/harness.ts';
import { TestTokenAttestor } from './helpers/test-attestor.ts';

const STEPS: RotationStep[] = ['keys-generated', 'issuer-answered', 'stored'];

/** A served SVID is consistent: its key is the leaf's key, and it is valid at `now`. */
function consistent(svid: X509Svid, now: number): void {
  assert.ok(svid.chain[0]?.checkPrivateKey(svid.privateKey), 'key matches the certificate');
  assert.ok(svid.notAfter > now);
}

for (const mode of ['attest', 'renew'] as const) {
  for (const step of STEPS) {
    test(`power cut during ${mode} at "${step}": the store reopens into a valid state`, async () => {
      let freeze = mode === 'attest';
      const h = await harness({
        onStep: (s) => (freeze && s === step ? new Promise<void>(() => {}) : undefined),
      });
      await h.clock.advance(0);
      const old = mode === 'renew' ? h.agent.svidSource.getX509Svid() : undefined;
      freeze = true;
      if (mode === 'renew') await h.clock.advance(0.56 * HOUR);
      // The process is gone at this point: abandon it (no stop), reboot on the same store bytes.
      h.issuer.faults.set('*', 'down');
      const rebooted = new VirtualClock(h.clock.now() + MIN);
      await h.restart({ clock: rebooted, onStep: () => undefined });
      const svid = (() => {
        try {
          return h.agent.svidSource.getX509Svid();
        } catch {
          return undefined;
        }
      })();
      if (step === 'stored') {
        assert.ok(svid, 'the committed identity is served');
        consistent(svid as X509Svid, rebooted.now());
        if (old) assert.not.ok(svid?.privateKey.equals(old.privateKey), 'it is the new one');
      } else if (mode === 'attest') {
        assert.is(svid, undefined, 'nothing half-written is served');
        assert.is(h.agent.status().store.dropped, 0);
      } else {
        assert.ok(svid && old && svid.privateKey.equals(old.privateKey), 'the previous identity is intact');
        consistent(svid as X509Svid, rebooted.now());
      }
      await h.agent.stop();
    });
  }
}

test('kill -9 of a real agent process at each step of a renewal leaves a loadable store', async () => {
  for (const step of STEPS) {
    const dir = mkdtempSync(join(tmpdir(), 'edgeward-crash-'));
    const t0 = Date.UTC(2026, 0, 1);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, 'helpers/crash-child.ts'), dir, String(t0), step],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, EDGEWARD_TEST_SEED: testSeed() } },
    );
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes(`AT ${step}`)) resolve();
      });
      child.on('exit', () => reject(new Error(`child exited early: ${out}`)));
    });
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const oldNotAfter = Number(/ATTESTED (\d+)/.exec(out)?.[1]);
    // Reopen what the dead process left and start an agent on it, offline.
    const now = t0 + 40 * MIN;
    const clock = new VirtualClock(now);
    const random = seededRandom('reader');
    const logger = new MemoryLogger();
    const db = new Level<string, Uint8Array>(join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' });
    const store = await SealedStore.open({
      db: db as unknown as LevelDb,
      protector: await keyFileProtector(join(dir, 'kek'), random, logger),
      random,
      logger,
    });
    const issuer = new FakeIssuer(clock, random);
    issuer.faults.set('*', 'down');
    const attestor = new TestTokenAttestor();
    await attestor.start();
    const agent = new Agent({
      trustDomain: 'fleet.example',
      store,
      attestor,
      upstream: issuer.upstream(),
      clock,
      random,
      logger,
      newKey: newP256Key,
    });
    await agent.start();
    const svid = agent.svidSource.getX509Svid();
    consistent(svid, now);
    assert.is(store.dropped, 0, step);
    if (step === 'stored') assert.ok(svid.notAfter > oldNotAfter, 'the renewed identity was committed');
    else assert.is(svid.notAfter, oldNotAfter, `${step}: the previous identity is intact`);
    await agent.stop();
    await store.close();
  }
});

test.run();
