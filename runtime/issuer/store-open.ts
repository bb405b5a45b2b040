/**
 * The issuer's store from its config's `store` section: LevelDB in a directory (one process, the
 * embedded default; a schema-1 store is upgraded in place when opened) or PostgreSQL (replicas;
 * the schema must have been created by `migrateIssuerStore`, i.e. `edgeward issuer migrate`).
 * Secrets: the database password only from `passwordFile` (0600), never from the URL or the
 * environment.
 *
 * @example
 * ```ts
 * await migrateIssuerStore(cfg.store);                               // edgeward issuer migrate
 * const store = await openIssuerStore(cfg.store, { clock, logger }); // edgeward issuer
 * ```
 */
import { readFile } from 'node:fs/promises';
import type { IssuerConfig } from '../config/issuer-schema.ts';
import { parseDuration } from '../config/types.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import { IssuerError } from '../errors.ts';
import { type IssuerStore, STORE_SCHEMA_VERSION } from './store.ts';
import { openLevelStore } from './store-level.ts';
import { migratePostgresStore, openPostgresStore, type PostgresStoreOptions } from './store-postgres.ts';
import { readPasswordFile } from './store-postgres-connect.ts';

export type StoreConfig = IssuerConfig['store'];

async function postgresOptions(
  pg: NonNullable<StoreConfig['postgres']>,
  deps: { clock?: Clock; logger?: Logger },
): Promise<PostgresStoreOptions> {
  let ca: Buffer | undefined;
  if (pg.caFile !== undefined) {
    try {
      ca = await readFile(pg.caFile);
    } catch (cause) {
      throw new IssuerError(
        'ERR_ISSUER_STORE_UNAVAILABLE',
        `cannot read store.postgres.caFile ${pg.caFile}`,
        {},
        { cause },
      );
    }
  }
  return {
    url: pg.url,
    ...(pg.passwordFile === undefined ? {} : { password: await readPasswordFile(pg.passwordFile) }),
    ...(ca === undefined ? {} : { ca }),
    ...(pg.poolSize === undefined ? {} : { poolSize: pg.poolSize }),
    ...(pg.queryTimeout === undefined ? {} : { queryTimeoutMs: parseDuration(pg.queryTimeout) }),
    ...deps,
  };
}

async function openLevel(dir: string): Promise<IssuerStore> {
  try {
    return await openLevelStore(dir);
  } catch (cause) {
    if (cause instanceof IssuerError) throw cause;
    throw new IssuerError(
      'ERR_ISSUER_INTERNAL',
      `cannot open the store in ${dir} (is another issuer process using it? LevelDB allows one)`,
      {},
      { cause },
    );
  }
}

/** Opens the configured store; each way it can fail at start is its own typed code. */
export async function openIssuerStore(
  store: StoreConfig,
  deps: { clock?: Clock; logger?: Logger } = {},
): Promise<IssuerStore> {
  if (store.postgres !== undefined) return openPostgresStore(await postgresOptions(store.postgres, deps));
  if (store.leveldb !== undefined) return openLevel(store.leveldb.dir);
  throw new TypeError('store config names no backend');
}

/** Creates or upgrades the configured store's schema (idempotent). */
export async function migrateIssuerStore(
  store: StoreConfig,
): Promise<{ kind: 'leveldb' | 'postgres'; from: number | undefined; to: number }> {
  if (store.postgres !== undefined) {
    return { kind: 'postgres', ...(await migratePostgresStore(await postgresOptions(store.postgres, {}))) };
  }
  if (store.leveldb !== undefined) {
    // LevelDB upgrades itself when opened (one process, nothing to coordinate).
    const s = await openLevel(store.leveldb.dir);
    await s.close();
    return { kind: 'leveldb', from: undefined, to: STORE_SCHEMA_VERSION };
  }
  throw new TypeError('store config names no backend');
}
