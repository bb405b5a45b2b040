/**
 * The gateway build's check of koffi's native modules (`elfMachine`): an ELF header gives its
 * machine; a file that is not one, a truncated one included, is `ERR_BUILD_FAILED`, never a
 * RangeError out of the header read.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { elfMachine } from '../../firmware-hooks/build/koffi.ts';
import { rejects } from '../helpers/rejects.ts';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-elf-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const elfHeader = (machine: number): Buffer => {
  const h = Buffer.alloc(64);
  h.writeUInt32BE(0x7f454c46, 0);
  h.writeUInt16LE(machine, 18);
  return h;
};

test('an ELF header gives its machine', () => {
  const f = join(dir, 'arm64.node');
  writeFileSync(f, elfHeader(183));
  assert.is(elfMachine(f), 183);
});

test('not an ELF file, or one cut short before e_machine: ERR_BUILD_FAILED', async () => {
  const text = join(dir, 'text.node');
  writeFileSync(text, 'not a shared object at all, just text');
  await rejects(() => elfMachine(text), 'ERR_BUILD_FAILED');
  const short = join(dir, 'short.node');
  writeFileSync(short, elfHeader(62).subarray(0, 10));
  await rejects(() => elfMachine(short), 'ERR_BUILD_FAILED');
  const empty = join(dir, 'empty.node');
  writeFileSync(empty, '');
  await rejects(() => elfMachine(empty), 'ERR_BUILD_FAILED');
});

test.run();
