/**
 * What an OTA update may change in the agent's sealed store, and how to put it back.
 *
 * - `snapshotStore` copies the sealed bytes of the data-key blob, the schema record and the
 *   identity records into the `ota-snapshot` sublevel, in one atomic batch. They stay sealed:
 *   nothing secret is ever written in the clear.
 * - `restoreSnapshot` writes them back (and deletes what did not exist then) atomically: the
 *   previous identity, and the previous sealing of the data key, come back together.
 * - `resealDataKey` unwraps the data key with one protector and wraps it with another. The data
 *   key itself never changes, so every value stays readable under either blob — which is what
 *   lets a rollback restore the old blob without re-encrypting anything.
 *
 * The raw `meta/` names below are the layout of `runtime/store/sealed-store.ts` (schema 1), the
 * record names those of `runtime/store/records.ts`; test/firmware-hooks/store-migration.test.ts
 * opens a `SealedStore` after each operation, so a change of that layout fails there.
 */
import type { AbstractBatchOperation, AbstractSublevel } from 'abstract-level';
import type { DataKeyProtector } from '../runtime/store/protector.ts';
import { NAMES } from '../runtime/store/records.ts';
import type { LevelDb } from '../runtime/store/sealed-store.ts';
import { HookError } from './errors.ts';

type BatchOp = AbstractBatchOperation<LevelDb, string, Uint8Array>;

const RAW = { keyEncoding: 'utf8', valueEncoding: 'view' } as const;
export const DATA_KEY_NAME = 'meta/data-key';
/** Records an update can change: sealing, layout version and the gateway's identity. */
export const SNAPSHOT_NAMES = [
  DATA_KEY_NAME,
  'meta/schema',
  NAMES.gateway,
  NAMES.bundle,
  NAMES.revocations,
] as const;
const SNAPSHOT = 'ota-snapshot';
const PRESENT = '#present';

type Snapshot = AbstractSublevel<LevelDb, unknown, string, Uint8Array>;

function snapshotLevel(db: LevelDb): Snapshot {
  return db.sublevel<string, Uint8Array>(SNAPSHOT, RAW) as unknown as Snapshot;
}

async function ensureOpen(db: LevelDb): Promise<void> {
  if (db.status !== 'open') await db.open();
}

/** Replace any previous snapshot with the current sealed records. */
export async function snapshotStore(db: LevelDb): Promise<{ names: string[] }> {
  await ensureOpen(db);
  const snap = snapshotLevel(db);
  const present: string[] = [];
  const ops: BatchOp[] = [];
  for await (const key of snap.keys(RAW)) ops.push({ type: 'del', key, sublevel: snap });
  for (const name of SNAPSHOT_NAMES) {
    const v = await db.get(name, RAW);
    if (v === undefined) continue;
    present.push(name);
    ops.push({ type: 'put', key: name, value: v, sublevel: snap });
  }
  if (!present.includes(DATA_KEY_NAME))
    throw new HookError('ERR_HOOK_RESEAL', 'the store has no data key: nothing to snapshot');
  ops.push({ type: 'put', key: PRESENT, value: Buffer.from(JSON.stringify(present)), sublevel: snap });
  await db.batch(ops, RAW);
  return { names: present };
}

export async function hasSnapshot(db: LevelDb): Promise<boolean> {
  await ensureOpen(db);
  return (await snapshotLevel(db).get(PRESENT, RAW)) !== undefined;
}

/** Put the snapshot back and remove it, in one batch. */
export async function restoreSnapshot(db: LevelDb): Promise<{ names: string[] }> {
  await ensureOpen(db);
  const snap = snapshotLevel(db);
  const index = await snap.get(PRESENT, RAW);
  if (index === undefined)
    throw new HookError('ERR_HOOK_NO_SNAPSHOT', 'no snapshot of the previous identity');
  const present = JSON.parse(Buffer.from(index).toString('utf8')) as string[];
  const ops: BatchOp[] = [];
  for (const name of SNAPSHOT_NAMES) {
    if (present.includes(name)) {
      const v = await snap.get(name, RAW);
      if (v === undefined) throw new HookError('ERR_HOOK_NO_SNAPSHOT', `snapshot lacks ${name}`);
      ops.push({ type: 'put', key: name, value: v });
    } else ops.push({ type: 'del', key: name });
  }
  for await (const key of snap.keys(RAW)) ops.push({ type: 'del', key, sublevel: snap });
  await db.batch(ops, RAW);
  return { names: present };
}

export async function dropSnapshot(db: LevelDb): Promise<void> {
  await ensureOpen(db);
  const snap = snapshotLevel(db);
  const ops: BatchOp[] = [];
  for await (const key of snap.keys(RAW)) ops.push({ type: 'del', key, sublevel: snap });
  if (ops.length > 0) await db.batch(ops, RAW);
}

/** Unwrap the data key with `from`, wrap it with `to`, and store the new blob. */
export async function resealDataKey(
  db: LevelDb,
  from: DataKeyProtector,
  to: DataKeyProtector,
): Promise<void> {
  await ensureOpen(db);
  const blob = await db.get(DATA_KEY_NAME, RAW);
  if (blob === undefined) throw new HookError('ERR_HOOK_RESEAL', 'the store has no data key');
  let key: Uint8Array;
  try {
    key = await from.unseal(blob);
  } catch (cause) {
    throw new HookError('ERR_HOOK_RESEAL', `the data key does not unseal (${from.kind})`, {}, { cause });
  }
  let next: Uint8Array;
  try {
    next = await to.seal(key);
  } finally {
    Buffer.from(key.buffer, key.byteOffset, key.byteLength).fill(0);
  }
  await db.put(DATA_KEY_NAME, next, RAW);
}
