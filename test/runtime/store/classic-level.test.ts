import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import type { LevelDb } from '../../../runtime/store/sealed-store.ts';
import { storeSuite } from './suite.ts';

const root = mkdtempSync(join(tmpdir(), 'edgeward-classic-'));
storeSuite(
  'classic-level',
  (name) =>
    new Level<string, Uint8Array>(join(root, name), {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    }) as unknown as LevelDb,
);
