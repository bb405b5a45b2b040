import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TPM_CC, TPM_RH, TPM_ST } from '../../../attestors/tpm/wire/constants.ts';
import { RC } from '../../../attestors/tpm/wire/rc.ts';
import { ekRsa2048Template } from '../../../attestors/tpm/wire/templates.ts';
import { openSim, type SimHarness } from './harness.ts';
import { command, createPrimary, getCapability, hex, PW, params, pcrRead } from './wire.ts';

let sim: SimHarness;
test.before(async () => {
  sim = await openSim({ autoStartup: false });
});
test.after(async () => sim.cleanup());

test('every command before Startup answers TPM_RC_INITIALIZE; Startup(STATE) without saved state is VALUE', async () => {
  assert.is((await sim.run(getCapability(6, 0x105, 1))).rc, RC.INITIALIZE);
  assert.is((await sim.run(hex('80010000000c000001440001'))).rc, 0x1c4);
  assert.is((await sim.run(hex('80010000000c000001440000'))).rc, 0);
  assert.is((await sim.run(hex('80010000000c000001440000'))).rc, RC.INITIALIZE, 'second Startup');
});

test('malformed headers get the codes a real TPM gives, as 10-byte 0x8001 responses', async () => {
  const cases: [string, Buffer, number][] = [
    ['bad tag', hex('80030000000e0000017381000001'), RC.BAD_TAG],
    ['size larger than bytes', hex('80010000000f0000017381000001'), RC.COMMAND_SIZE],
    ['size smaller than bytes', hex('80010000000d0000017381000001'), RC.COMMAND_SIZE],
    ['shorter than a header', hex('800100'), RC.COMMAND_SIZE],
    ['unknown command code', hex('80010000000a00000999'), RC.COMMAND_CODE],
    ['missing handle', hex('80010000000a00000173'), RC.INSUFFICIENT],
    [
      'auth handle without sessions',
      createPrimary(TPM_RH.OWNER, ekRsa2048Template()).fill(0x01, 1, 2),
      RC.AUTH_MISSING,
    ],
    ['tag 0x8002 without an auth area', hex('80020000000e0000017381010001'), RC.INSUFFICIENT],
    ['auth area of size 0', hex('8002000000120000017381010001 00000000'), RC.SIZE],
    ['trailing parameter bytes', hex('80010000000d0000017b002000'), RC.SIZE],
    ['truncated parameter', hex('80010000000b0000017b00'), RC.INSUFFICIENT | 0x140],
  ];
  for (const [what, bytes, rc] of cases) {
    const r = await sim.run(bytes);
    assert.is(r.rc, rc, `${what}: 0x${r.rc.toString(16)}`);
    assert.is(r.tag, TPM_ST.NO_SESSIONS, what);
    assert.is(r.bytes.length, 10, what);
  }
});

test('handle and session errors name the handle or session, as swtpm does', async () => {
  const readPublic = (h: number): Buffer => command(TPM_CC.ReadPublic, [h]);
  assert.is((await sim.run(readPublic(0x80000001))).rc, RC.REFERENCE_H0, 'empty transient slot');
  assert.is((await sim.run(readPublic(0x80000005))).rc, 0x184, 'transient beyond the slots');
  assert.is((await sim.run(readPublic(0x81000005))).rc, 0x18b, 'absent persistent');
  assert.is((await sim.run(readPublic(TPM_RH.ENDORSEMENT))).rc, 0x184, 'not an object');
  assert.is(
    (await sim.run(command(TPM_CC.ReadPublic, [0x81010001], [PW]))).rc,
    0x98b,
    'extra password session',
  );
  assert.is((await sim.run(command(TPM_CC.PolicyGetDigest, [0x03000000]))).rc, RC.REFERENCE_H0);
  assert.is((await sim.run(command(TPM_CC.FlushContext, [], undefined, (w) => w.u32(0x80000000)))).rc, 0x1cb);
  const wrong = await sim.run(
    createPrimary(TPM_RH.OWNER, ekRsa2048Template(), { handle: TPM_RH.PW, hmac: Buffer.from('x') }),
  );
  assert.is(wrong.rc, 0x9a2, 'wrong owner password: BAD_AUTH session 1');
});

test('GetCapability pages properties and answers PCR banks and commands', async () => {
  const r = await sim.run(getCapability(6, 0x105, 2));
  const { r: p } = params(r);
  assert.is(p.u8(), 1, 'moreData');
  assert.is(p.u32(), 6);
  assert.is(p.u32(), 2);
  assert.equal([p.u32(), p.u32(), p.u32()], [0x105, 0x45444757, 0x106]);
  const banks = params(await sim.run(getCapability(5, 0, 1))).r;
  banks.u8();
  banks.u32();
  assert.is(banks.u32(), 4);
  const sel = [0, 1, 2, 3].map(() => [banks.u16(), banks.u8(), banks.bytes(3).toString('hex')]);
  assert.equal(sel, [
    [4, 3, '000000'],
    [11, 3, 'ffffff'],
    [12, 3, '000000'],
    [13, 3, '000000'],
  ]);
  const cmds = params(await sim.run(getCapability(2, TPM_CC.Quote, 1))).r;
  assert.is(cmds.u8(), 1);
  cmds.u32();
  assert.is(cmds.u32(), 1);
  assert.is(cmds.u32(), (TPM_CC.Quote | (1 << 25)) >>> 0);
  assert.is((await sim.run(getCapability(0x99, 0, 1))).rc, 0x1c4);
});

test('GetRandom returns at most 64 bytes, PCR_Read at most 8 digests per call', async () => {
  const r = params(await sim.run(command(TPM_CC.GetRandom, [], undefined, (w) => w.u16(100)))).r;
  assert.is(r.tpm2b().length, 64);
  const read = params(await sim.run(pcrRead([{ hash: 0x0b, pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 16, 17] }]))).r;
  read.u32();
  assert.equal(read.u32(), 1);
  read.u16();
  read.u8();
  assert.is(read.bytes(3).toString('hex'), 'ff0000');
  assert.is(read.u32(), 8);
  const wrongSize = hex('800100000013 0000017e 00000001 000b 02 ffff');
  assert.is((await sim.run(wrongSize)).rc, 0x1c4, 'sizeofSelect 2');
});

test.run();
