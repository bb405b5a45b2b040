import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { keyFileProtector } from '../../../runtime/store/key-file.ts';
import { seededRandom } from '../../../sim/random.ts';
import { rejects } from '../../helpers/rejects.ts';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-kek-'));
const random = seededRandom('kek');

test('creates a 0600 key file, warns at every open, and wraps a data key both ways', async () => {
  const path = join(dir, 'a.key');
  const logger = new MemoryLogger();
  const p = await keyFileProtector(path, random, logger);
  assert.is(statSync(path).mode & 0o777, 0o600);
  assert.is(statSync(path).size, 32);
  const dataKey = random.bytes(32);
  const blob = await p.seal(dataKey);
  assert.is(Buffer.from(blob).indexOf(dataKey), -1);
  const again = await keyFileProtector(path, random, logger);
  assert.equal(Buffer.from(await again.unseal(blob)), dataKey);
  const warnings = logger.lines.filter((l) => l.level === 'warn' && l.fields.event === 'store.key-file');
  assert.is(warnings.length, 2);
  assert.is(p.kind, 'key-file');
});

test('a key file readable by others, of the wrong size, or a directory is refused', async () => {
  const open = join(dir, 'open.key');
  writeFileSync(open, random.bytes(32), { mode: 0o600 });
  chmodSync(open, 0o644);
  await rejects(() => keyFileProtector(open, random, new MemoryLogger()), 'ERR_STORE_KEY_FILE');
  const short = join(dir, 'short.key');
  writeFileSync(short, random.bytes(16), { mode: 0o600 });
  await rejects(() => keyFileProtector(short, random, new MemoryLogger()), 'ERR_STORE_KEY_FILE');
  await rejects(() => keyFileProtector(dir, random, new MemoryLogger()), 'ERR_STORE_KEY_FILE');
});

test('another key file cannot open the blob, nor can a tampered blob be opened', async () => {
  const a = await keyFileProtector(join(dir, 'x.key'), random, new MemoryLogger());
  const b = await keyFileProtector(join(dir, 'y.key'), random, new MemoryLogger());
  const blob = await a.seal(random.bytes(32));
  await rejects(() => b.unseal(blob), 'ERR_STORE_KEY');
  const bad = Buffer.from(blob);
  bad[14] = (bad[14] as number) ^ 1;
  await rejects(() => a.unseal(bad), 'ERR_STORE_KEY');
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
