/**
 * The agent's store on disk as the hooks open it: classic-level at `<dataDir>/store` (exactly
 * where runtime/agent/run.ts opens it), raw keys and values (values stay sealed).
 *
 * LevelDB admits one process at a time and the running agent holds the lock. The hooks never
 * share the store with a running agent: the adapters stop `edgeward.service` around every phase
 * that touches the store, and the systemd drop-in (adapters/systemd) keeps the agent from starting
 * while an update waits for post-boot or rollback. A hook that finds the lock taken waits up to
 * `waitMs` (the agent's shutdown after `systemctl stop` is still running) and then fails with
 * ERR_HOOK_STORE naming the cause; it never touches a store it does not hold.
 *
 * @example
 * ```ts
 * const db = await openStoreDb(join(dataDir, 'store'), { clock, waitMs: 30_000 });
 * ```
 */
import { ClassicLevel } from 'classic-level';
import { type Clock, sleep } from '../runtime/core/clock.ts';
import type { LevelDb } from '../runtime/store/sealed-store.ts';
import { HookError } from './errors.ts';

const RETRY_MS = 200;

export interface OpenStoreOptions {
  /** How long to wait for a lock held by another process (default 0: fail at once). */
  readonly waitMs?: number;
  /** Needed when `waitMs` > 0. */
  readonly clock?: Clock;
}

const isLocked = (err: unknown): boolean =>
  (err as { cause?: { code?: string } } | undefined)?.cause?.code === 'LEVEL_LOCKED';

export async function openStoreDb(location: string, options: OpenStoreOptions = {}): Promise<LevelDb> {
  const waitMs = options.waitMs ?? 0;
  if (waitMs > 0 && options.clock === undefined) throw new TypeError('openStoreDb: waiting needs a clock');
  const started = options.clock?.monotonic() ?? 0;
  for (;;) {
    const db = new ClassicLevel<string, Uint8Array>(location, {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
      createIfMissing: false,
    }) as unknown as LevelDb;
    try {
      await db.open();
      return db;
    } catch (cause) {
      const locked = isLocked(cause);
      const clock = options.clock;
      if (locked && clock !== undefined && clock.monotonic() - started + RETRY_MS <= waitMs) {
        await sleep(clock, RETRY_MS);
        continue;
      }
      throw new HookError(
        'ERR_HOOK_STORE',
        locked
          ? `store ${location} is locked by a running agent (waited ${waitMs} ms): stop edgeward.service first`
          : `store ${location} cannot be opened (no identity yet, or not an edgeward store)`,
        { location, locked },
        { cause },
      );
    }
  }
}
