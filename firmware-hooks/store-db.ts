/**
 * The agent's store on disk as the hooks open it: classic-level at `<dataDir>/store`, raw keys
 * and values (the values stay sealed; the hooks only copy and restore them). LevelDB allows one
 * process at a time: the phases that touch the store run while the agent is stopped or not yet
 * started (see the README's unit ordering).
 */
import { ClassicLevel } from 'classic-level';
import type { LevelDb } from '../runtime/store/sealed-store.ts';
import { HookError } from './errors.ts';

export async function openStoreDb(location: string): Promise<LevelDb> {
  const db = new ClassicLevel<string, Uint8Array>(location, {
    keyEncoding: 'utf8',
    valueEncoding: 'view',
    createIfMissing: false,
  }) as unknown as LevelDb;
  try {
    await db.open();
  } catch (cause) {
    throw new HookError(
      'ERR_HOOK_STORE',
      `store ${location} cannot be opened (missing, or locked by a running agent)`,
      { location },
      { cause },
    );
  }
  return db;
}
