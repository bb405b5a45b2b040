/**
 * The gateway build's checks of koffi's native module packages: `elfMachine` (an ELF header gives
 * its machine; a file that is not one, a truncated one included, is `ERR_BUILD_FAILED`, never a
 * RangeError out of the header read) and `lockIntegrity` (the integrity package-lock.json records,
 * the project's own read as it is; a lock that does not parse, lacks the entry or records a
 * malformed or unknown-algorithm integrity is `ERR_BUILD_FAILED`, never a SyntaxError or a
 * crypto error).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { elfMachine, lockIntegrity } from '../../firmware-hooks/build/koffi.ts';
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

test('lockIntegrity: the project lock as recorded; malformed locks and entries are ERR_BUILD_FAILED', async () => {
  const root = join(import.meta.dirname, '..', '..');
  const got = lockIntegrity(root, '@koromix/koffi-linux-arm64');
  assert.is(got.algo, 'sha512');
  assert.is(Buffer.from(got.digest, 'base64').length, 64);
  const lock = (body: string): string => {
    const r = mkdtempSync(join(dir, 'lock-'));
    writeFileSync(join(r, 'package-lock.json'), body);
    return r;
  };
  const entry = (integrity: unknown): string =>
    lock(JSON.stringify({ packages: { 'node_modules/k': { version: '1.0.0', integrity } } }));
  assert.equal(lockIntegrity(entry('sha256-AAAA'), 'k'), { algo: 'sha256', digest: 'AAAA' });
  await rejects(() => lockIntegrity(lock('{"packages": '), 'k'), 'ERR_BUILD_FAILED');
  await rejects(() => lockIntegrity(lock('null'), 'k'), 'ERR_BUILD_FAILED');
  await rejects(() => lockIntegrity(dir, 'k'), 'ERR_BUILD_FAILED'); // no lock at all
  await rejects(() => lockIntegrity(entry(undefined), 'k'), 'ERR_BUILD_FAILED');
  await rejects(() => lockIntegrity(entry('md4-AAAA'), 'k'), 'ERR_BUILD_FAILED');
  await rejects(() => lockIntegrity(entry('sha512'), 'k'), 'ERR_BUILD_FAILED');
  await rejects(() => lockIntegrity(entry(42), 'k'), 'ERR_BUILD_FAILED');
});

test.run();
