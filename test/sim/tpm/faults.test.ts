import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TPM_ALG, TPM_CC, TPM_RH } from '../../../attestors/tpm/wire/constants.ts';
import type { TpmtPublic } from '../../../attestors/tpm/wire/public.ts';
import { RC } from '../../../attestors/tpm/wire/rc.ts';
import { srkEccP256Template } from '../../../attestors/tpm/wire/templates.ts';
import { openSim, type SimHarness } from './harness.ts';
import { command, create, createPrimary, getCapability, load, PW, params, pcrExtend, pw } from './wire.ts';

/** A sealed object with a password (userWithAuth) and DA protection (noDA clear). */
const DA_SEALED: TpmtPublic = {
  type: TPM_ALG.KEYEDHASH,
  nameAlg: TPM_ALG.SHA256,
  attributes: 0x52,
  authPolicy: Buffer.alloc(0),
  params: { type: TPM_ALG.KEYEDHASH, scheme: { scheme: TPM_ALG.NULL } },
  unique: Buffer.alloc(0),
};

async function daObject(sim: SimHarness, password: Buffer, data: Buffer): Promise<number> {
  const srk = params(await sim.run(createPrimary(TPM_RH.OWNER, srkEccP256Template())), true).handle as number;
  const c = params(await sim.run(create(srk, DA_SEALED, data, PW, password))).r;
  const priv = c.tpm2b();
  const pub = c.tpm2b();
  return params(await sim.run(load(srk, priv, pub)), true).handle as number;
}

const unseal = (h: number, password: Buffer): Buffer => command(TPM_CC.Unseal, [h], [pw(password)]);

async function loadedObjects(sim: SimHarness): Promise<number> {
  const r = params(await sim.run(getCapability(1, 0x80000000, 8))).r;
  r.u8();
  r.u32();
  return r.u32();
}

test('failNext answers the next commands with TPM_RC_RETRY (or any code) without running them', async () => {
  const sim = await openSim({ ekTypes: ['ecc'] });
  try {
    sim.tpm.failNext(2);
    assert.is((await sim.run(getCapability(6, 0x105, 1))).rc, RC.RETRY);
    assert.is((await sim.run(createPrimary(TPM_RH.NULL, srkEccP256Template()))).rc, RC.RETRY);
    assert.is(await loadedObjects(sim), 0, 'the failed CreatePrimary did not run');
    sim.tpm.failNext(1, RC.LOCKOUT);
    assert.is((await sim.run(getCapability(6, 0x105, 1))).rc, RC.LOCKOUT);
    assert.is((await sim.run(getCapability(6, 0x105, 1))).rc, 0);
    assert.throws(
      () => sim.tpm.failNext(-1),
      (e: Error & { code?: string }) => e.code === 'ERR_SIM_OPTIONS',
    );
  } finally {
    await sim.cleanup();
  }
});

test('dictionary attack: wrong passwords count, lockout answers TPM_RC_LOCKOUT, clearing it restores', async () => {
  const sim = await openSim({ ekTypes: ['ecc'], maxTries: 2 });
  try {
    const h = await daObject(sim, Buffer.from('pw'), Buffer.from('s3cret'));
    assert.equal(params(await sim.run(unseal(h, Buffer.from('pw')))).r.tpm2b(), Buffer.from('s3cret'));
    assert.is((await sim.run(unseal(h, Buffer.from('bad')))).rc, 0x98e, 'AUTH_FAIL, session 1');
    assert.is((await sim.run(unseal(h, Buffer.from('bad')))).rc, 0x98e);
    assert.is((await sim.run(unseal(h, Buffer.from('pw')))).rc, RC.LOCKOUT, 'locked out after maxTries');
    sim.tpm.lockout(false);
    assert.is((await sim.run(unseal(h, Buffer.from('pw')))).rc, 0);
    sim.tpm.lockout(true);
    assert.is((await sim.run(unseal(h, Buffer.from('pw')))).rc, RC.LOCKOUT);
  } finally {
    await sim.cleanup();
  }
});

test('retryQuirk: the first authValue use of a DA object after Startup gets TPM_RC_RETRY, as libtpms 0.9.2', async () => {
  const sim = await openSim({ ekTypes: ['ecc'], retryQuirk: true });
  try {
    const h = await daObject(sim, Buffer.from('pw'), Buffer.from('x'));
    assert.is((await sim.run(unseal(h, Buffer.from('pw')))).rc, RC.RETRY);
    assert.is((await sim.run(unseal(h, Buffer.from('pw')))).rc, 0, 'the identical retry succeeds');
  } finally {
    await sim.cleanup();
  }
});

test('resetBeforeNext: a power loss lands between two commands', async () => {
  const sim = await openSim({ ekTypes: ['ecc'] });
  try {
    await sim.run(pcrExtend(0, TPM_ALG.SHA256, Buffer.alloc(32, 1)));
    const h = params(await sim.run(createPrimary(TPM_RH.NULL, srkEccP256Template())), true).handle as number;
    sim.tpm.resetBeforeNext();
    assert.is((await sim.run(command(TPM_CC.ReadPublic, [h]))).rc, RC.REFERENCE_H0);
    assert.is(await loadedObjects(sim), 0);
  } finally {
    await sim.cleanup();
  }
});

test('slow responses wait on the injected clock; concurrent callers are served one at a time, in order', async () => {
  const sim = await openSim({ ekTypes: ['ecc'] });
  try {
    sim.tpm.delayNext(1, 2_000);
    let done = false;
    const slow = sim.run(getCapability(6, 0x105, 1)).then((r) => {
      done = true;
      return r;
    });
    const after = sim.run(createPrimary(TPM_RH.NULL, srkEccP256Template()));
    await sim.clock.advance(1_999);
    assert.not.ok(done, 'not before the delay has passed');
    await sim.clock.advance(1);
    assert.is((await slow).rc, 0);
    const second = params(await after, true);
    assert.is(second.handle, 0x80000000);
  } finally {
    await sim.cleanup();
  }
});

test.run();
