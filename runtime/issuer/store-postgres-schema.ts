/**
 * The issuer's tables in PostgreSQL (schema `edgeward`) and their migrations. `migrate` is what
 * `edgeward issuer migrate` runs (once per rollout, idempotent, serialised by an advisory lock,
 * each step in the one transaction that records it); `checkSchema` is what a replica runs at start:
 * it writes nothing and refuses a database not migrated yet or migrated by a newer edgeward.
 *
 * Version 1:
 * - `kv (key text COLLATE "C" PRIMARY KEY, value bytea, version bigint)`: byte order of keys as in
 *   LevelDB; `version` from the sequence `kv_version`, so a re-created key never reuses one;
 * - `sequences (name, value)`: a store sequence is a row, incremented under its row lock inside the
 *   batch's transaction, so batches allocating from one sequence commit in sequence order (an SQL
 *   SEQUENCE would not: its values are handed out before, and independently of, commit);
 * - `apply_batch(...)`: one batch in one statement (one round trip): advisory transaction locks on
 *   every key it names (sorted, so two batches cannot deadlock), the preconditions (SQLSTATE EW409
 *   when one fails, DETAIL = its index, HINT = the version found), the writes, the notifications;
 * - `schema_version`: one row.
 */
import type pg from 'pg';
import { IssuerError } from '../errors.ts';

export const PG_SCHEMA_VERSION = 1;
/** Two-int advisory lock class of the issuer store (0x6577 'ew'); migrations take objid 0. */
export const LOCK_CLASS = 0x6577;

const STEPS: Readonly<Record<number, string>> = {
  1: `
CREATE SCHEMA IF NOT EXISTS edgeward;
CREATE TABLE edgeward.schema_version (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  version integer NOT NULL,
  migrated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE edgeward.kv (
  key text COLLATE "C" PRIMARY KEY,
  value bytea NOT NULL,
  version bigint NOT NULL
);
CREATE TABLE edgeward.sequences (
  name text COLLATE "C" PRIMARY KEY,
  value bigint NOT NULL
);
CREATE SEQUENCE edgeward.kv_version;
CREATE FUNCTION edgeward.apply_batch(
  p_locks bigint[],
  p_cond_keys text[], p_cond_kinds text[], p_cond_versions bigint[],
  p_put_keys text[], p_put_values bytea[], p_del_keys text[],
  p_channels text[], p_payloads text[]
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
  v_version bigint;
  v_found bigint;
  v_kind text;
BEGIN
  PERFORM pg_advisory_xact_lock(l) FROM unnest(p_locks) AS l;
  FOR i IN 1 .. coalesce(array_length(p_cond_keys, 1), 0) LOOP
    v_kind := p_cond_kinds[i];
    SELECT k.version INTO v_found FROM edgeward.kv k WHERE k.key = p_cond_keys[i];
    IF NOT FOUND THEN v_found := NULL; END IF;
    IF (v_kind = 'absent' AND v_found IS NOT NULL)
       OR (v_kind = 'present' AND v_found IS NULL)
       OR (v_kind = 'version' AND (v_found IS NULL OR v_found <> p_cond_versions[i])) THEN
      RAISE EXCEPTION 'store precondition failed' USING ERRCODE = 'EW409',
        DETAIL = (i - 1)::text, HINT = coalesce(v_found::text, 'absent');
    END IF;
  END LOOP;
  IF coalesce(array_length(p_put_keys, 1), 0) > 0 THEN
    v_version := nextval('edgeward.kv_version');
    INSERT INTO edgeward.kv (key, value, version)
      SELECT t.k, t.v, v_version FROM unnest(p_put_keys, p_put_values) AS t(k, v)
      ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version;
  END IF;
  IF coalesce(array_length(p_del_keys, 1), 0) > 0 THEN
    DELETE FROM edgeward.kv WHERE key = ANY (p_del_keys);
  END IF;
  PERFORM pg_notify(t.c, t.p) FROM unnest(p_channels, p_payloads) AS t(c, p);
  RETURN v_version;
END
$fn$;
`,
};

type Queryable = Pick<pg.ClientBase, 'query'>;

async function readVersion(c: Queryable): Promise<number | undefined> {
  const reg = await c.query<{ r: string | null }>(`SELECT to_regclass('edgeward.schema_version')::text AS r`);
  if (reg.rows[0]?.r == null) return undefined;
  const v = await c.query<{ version: number }>('SELECT version FROM edgeward.schema_version');
  return v.rows[0]?.version;
}

function newer(found: number): IssuerError {
  return new IssuerError(
    'ERR_ISSUER_STORE_SCHEMA_NEWER',
    `the database's issuer schema is version ${found}, newer than this edgeward knows (${PG_SCHEMA_VERSION}): run the newer edgeward; nothing was changed`,
    { found, known: PG_SCHEMA_VERSION },
  );
}

/** At start of a replica: the schema must be exactly this build's. Writes nothing. */
export async function checkSchema(c: Queryable): Promise<void> {
  const found = await readVersion(c);
  if (found === undefined || found < PG_SCHEMA_VERSION) {
    throw new IssuerError(
      'ERR_ISSUER_STORE_NOT_MIGRATED',
      found === undefined
        ? 'the database has no issuer schema: run `edgeward issuer migrate --config FILE` first'
        : `the database's issuer schema is version ${found}, this edgeward needs ${PG_SCHEMA_VERSION}: run \`edgeward issuer migrate --config FILE\``,
      { found: found ?? 0, known: PG_SCHEMA_VERSION },
    );
  }
  if (found > PG_SCHEMA_VERSION) throw newer(found);
}

/** Creates or upgrades the schema; returns the versions before and after. Idempotent. */
export async function migrate(c: pg.ClientBase): Promise<{ from: number; to: number }> {
  await c.query('BEGIN');
  try {
    await c.query('SELECT pg_advisory_xact_lock($1::int, 0)', [LOCK_CLASS]);
    const env = await c.query<{ enc: string; num: string }>(
      `SELECT current_setting('server_encoding') AS enc, current_setting('server_version_num') AS num`,
    );
    const { enc, num } = env.rows[0] as { enc: string; num: string };
    if (enc !== 'UTF8' || Number(num) < 130000) {
      throw new IssuerError(
        'ERR_ISSUER_STORE_UNSUPPORTED',
        `the database is ${enc}-encoded on PostgreSQL ${num}: the issuer store needs UTF8 and PostgreSQL 13 or newer`,
        { encoding: enc, serverVersion: num },
      );
    }
    const from = (await readVersion(c)) ?? 0;
    if (from > PG_SCHEMA_VERSION) throw newer(from);
    for (let v = from + 1; v <= PG_SCHEMA_VERSION; v++) await c.query(STEPS[v] as string);
    if (from < PG_SCHEMA_VERSION) {
      await c.query(
        `INSERT INTO edgeward.schema_version (one, version) VALUES (true, $1)
         ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()`,
        [PG_SCHEMA_VERSION],
      );
    }
    await c.query('COMMIT');
    return { from, to: PG_SCHEMA_VERSION };
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
