import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseAttest } from '../../../attestors/tpm/wire/attest.ts';
import { TPM_ALG, TPM_CC, TPM_RH } from '../../../attestors/tpm/wire/constants.ts';
import { akEccP256Template, ekRsa2048Template } from '../../../attestors/tpm/wire/templates.ts';
import { openSimTransport } from '../../../sim/tpm/index.ts';
import { rejects } from '../../helpers/rejects.ts';
import { openSim, type SimHarness } from './harness.ts';
import { command, createPrimary, flush, hex, params, pcrExtend, pcrRead, quote } from './wire.ts';

const SHA256_0 = [{ hash: TPM_ALG.SHA256, pcrs: [0] }];

async function pcr0(sim: SimHarness): Promise<Buffer> {
  const r = params(await sim.run(pcrRead(SHA256_0))).r;
  r.u32();
  r.u32();
  r.bytes(6);
  r.u32();
  return r.tpm2b();
}

async function clockInfo(sim: SimHarness) {
  const ak = params(await sim.run(createPrimary(TPM_RH.ENDORSEMENT, akEccP256Template())), true);
  const q = params(await sim.run(quote(ak.handle as number, Buffer.alloc(16), SHA256_0))).r;
  const attest = parseAttest(q.tpm2b());
  await sim.run(flush(ak.handle as number));
  return attest.clockInfo;
}

test('state lives in 0600 files written atomically, beside the manufacturer CA certificates', async () => {
  const sim = await openSim({ ekTypes: ['ecc'] });
  try {
    const files = readdirSync(sim.dir).sort();
    assert.equal(files, [
      '.lock',
      'manufacturer-intermediate-ca.pem',
      'manufacturer-root-ca.pem',
      'tpm-state.json',
    ]);
    for (const f of files) assert.is(statSync(join(sim.dir, f)).mode & 0o777, 0o600, f);
    assert.match(readFileSync(sim.tpm.manufacturerCaPaths.root, 'utf8'), /BEGIN CERTIFICATE/);
    assert.ok(!readdirSync(sim.dir).some((f) => f.includes('.tmp')), 'no temp file left');
  } finally {
    await sim.cleanup();
  }
});

/** The Name at the end of a CreatePrimary response. */
function primaryName(r: ReturnType<typeof params>['r']): Buffer {
  r.tpm2b();
  r.tpm2b();
  r.tpm2b();
  r.u16();
  r.u32();
  r.tpm2b();
  return r.tpm2b();
}

async function readPublicName(sim: SimHarness, h: number): Promise<Buffer> {
  const r = params(await sim.run(command(TPM_CC.ReadPublic, [h]))).r;
  r.tpm2b();
  return r.tpm2b();
}

test('the same seed gives the same primary across process restarts; the EK is that primary', async () => {
  let sim = await openSim({ ekTypes: ['rsa'] });
  try {
    const a = params(await sim.run(createPrimary(TPM_RH.ENDORSEMENT, ekRsa2048Template())), true);
    const nameA = primaryName(a.r);
    assert.equal(await readPublicName(sim, 0x81010001), nameA, 'persistent EK = CreatePrimary(L-1)');
    await sim.run(flush(a.handle as number));
    sim = await sim.reopen();
    const b = params(await sim.run(createPrimary(TPM_RH.ENDORSEMENT, ekRsa2048Template())), true);
    assert.equal(primaryName(b.r), nameA, 'same key after a restart');
    assert.equal(await readPublicName(sim, 0x81010001), nameA);
    const owner = params(await sim.run(createPrimary(TPM_RH.OWNER, ekRsa2048Template())), true);
    assert.not.equal(primaryName(owner.r), nameA, 'another hierarchy seed, another key');
  } finally {
    await sim.cleanup();
  }
});

test('reset clears PCRs, forgets transient objects, increments resetCount; orderly or not sets safe', async () => {
  const sim = await openSim({ ekTypes: ['ecc'] });
  try {
    const first = await clockInfo(sim);
    assert.is(first.resetCount, 1);
    assert.ok(first.safe);
    await sim.run(pcrExtend(0, TPM_ALG.SHA256, Buffer.alloc(32, 1)));
    assert.not.equal(await pcr0(sim), Buffer.alloc(32));
    const h = params(await sim.run(createPrimary(TPM_RH.NULL, akEccP256Template())), true).handle as number;
    await sim.clock.advance(5_000);
    await sim.tpm.reset();
    assert.equal(await pcr0(sim), Buffer.alloc(32));
    assert.is((await sim.run(command(TPM_CC.ReadPublic, [h]))).rc, 0x910, 'transient object gone');
    const lost = await clockInfo(sim);
    assert.is(lost.resetCount, 2);
    assert.is(lost.restartCount, 0);
    assert.not.ok(lost.safe, 'a power loss makes the clock unsafe');
    assert.ok(lost.clock >= first.clock + 5_000n);
    await sim.tpm.reset({ orderly: true });
    const orderly = await clockInfo(sim);
    assert.is(orderly.resetCount, 3);
    assert.ok(orderly.safe);
  } finally {
    await sim.cleanup();
  }
});

test('Shutdown(STATE) + Startup(STATE) resumes PCRs and counts a restart', async () => {
  const sim = await openSim({ ekTypes: ['ecc'], autoStartup: false });
  try {
    await sim.run(hex('80010000000c000001440000'));
    await sim.run(pcrExtend(0, TPM_ALG.SHA256, Buffer.alloc(32, 2)));
    const extended = await pcr0(sim);
    assert.is((await sim.run(hex('80010000000c000001450001'))).rc, 0, 'Shutdown(STATE)');
    await sim.tpm.reset({ orderly: false });
    assert.is((await sim.run(hex('80010000000c000001440001'))).rc, 0, 'Startup(STATE)');
    assert.equal(await pcr0(sim), extended, 'PCRs resumed');
    const info = await clockInfo(sim);
    assert.is(info.restartCount, 1);
    assert.is((await sim.run(hex('80010000000c000001450000'))).rc, 0, 'Shutdown(CLEAR)');
    await sim.tpm.reset();
    assert.is(
      (await sim.run(hex('80010000000c000001440001'))).rc,
      0x1c4,
      'no saved state after Shutdown(CLEAR)',
    );
  } finally {
    await sim.cleanup();
  }
});

test('a locked, corrupt or world-readable state directory is refused with a typed error', async () => {
  const sim = await openSim({ ekTypes: ['ecc'] });
  const dir = sim.dir;
  await rejects(() => openSimTransport(dir), 'ERR_SIM_LOCKED');
  await sim.tpm.close();
  const file = join(dir, 'tpm-state.json');
  chmodSync(file, 0o644);
  await rejects(() => openSimTransport(dir), 'ERR_SIM_STATE_CORRUPT');
  chmodSync(file, 0o600);
  const good = readFileSync(file, 'utf8');
  writeFileSync(file, '{"version":1,"seeds":', { mode: 0o600 });
  await rejects(() => openSimTransport(dir), 'ERR_SIM_STATE_CORRUPT');
  writeFileSync(file, good.replace('"version":1', '"version":9'), { mode: 0o600 });
  await rejects(() => openSimTransport(dir), 'ERR_SIM_STATE_CORRUPT');
  writeFileSync(file, good, { mode: 0o600 });
  const again = await openSimTransport(dir);
  await again.close();
  await rejects(() => again.send(hex('80010000000a0000017a')), 'ERR_SIM_CLOSED');
  await rejects(() => openSimTransport(dir, { pcrBanks: [] }), 'ERR_SIM_OPTIONS');
  await sim.cleanup();
});

test.run();
