/**
 * Store schema versions and migrations. OTA upgrades keep the store, so every change of layout
 * bumps `STORE_SCHEMA_VERSION` and adds a migration from the previous version. A store newer than
 * this build is refused (`ERR_STORE_SCHEMA`), never guessed at: a rolled-back firmware then
 * re-attests into a fresh store only when the operator wipes it.
 *
 * A migration reads through `ctx` and queues its writes; the runner commits them together with the
 * new version number in one atomic batch, so a power cut mid-migration leaves the old version.
 */
import type { StoreOp } from './sealed-store.ts';

/**
 * Version 1: gateway, device-ca, bundle, revocations, floor, device/<id> (see `records.ts`).
 * Version 2: the gateway record says where its delegated CA key lives (`caKeyBackend`:
 * `software` PKCS#8, or a `tpm` key blob); every version-1 key was software.
 */
export const STORE_SCHEMA_VERSION = 2;

export interface MigrationContext {
  get<T>(name: string): Promise<T | undefined>;
  entries<T>(prefix: string): AsyncIterable<[string, T]>;
  /** Queue a write; committed with the version bump. */
  queue(op: StoreOp): void;
}

export interface StoreMigration {
  /** Upgrades a store at version `from` to `from + 1`. */
  readonly from: number;
  up(ctx: MigrationContext): Promise<void>;
}

/** The migrations of this build, oldest first. */
export const STORE_MIGRATIONS: readonly StoreMigration[] = [
  {
    from: 1,
    async up(ctx) {
      const g = await ctx.get<Record<string, unknown>>('gateway');
      if (g !== undefined && g.caKeyBackend === undefined)
        ctx.queue({ type: 'put', name: 'gateway', value: { ...g, caKeyBackend: 'software' } });
    },
  },
];
