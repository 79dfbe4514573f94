/**
 * The PostgreSQL schema: the history both stores share (../schema.ts), versions kept in schema_version.
 * Replicas that start together migrate one at a time (an advisory lock), and a database that a newer
 * build has migrated is refused, as in SQLite.
 */
import type pg from 'pg';
import { migrations } from '../schema.js';

export const PG_MIGRATIONS = migrations('postgres');

/** Any constant both replicas agree on: it names the lock that serialises their migrations. */
const MIGRATION_LOCK = 0x0ec2c4ea;

export async function migratePostgres(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    const found = await client.query<{ version: number }>('SELECT version FROM schema_version');
    if (found.rows.length === 0) await client.query('INSERT INTO schema_version (version) VALUES (0)');
    const current = found.rows[0]?.version ?? 0;
    if (current > PG_MIGRATIONS.length) {
      throw new Error(
        `database schema version ${current} is newer than this build knows (${PG_MIGRATIONS.length}); refusing to run`,
      );
    }
    for (let version = current; version < PG_MIGRATIONS.length; version += 1) {
      await client.query(PG_MIGRATIONS[version] as string);
      await client.query('UPDATE schema_version SET version = $1', [version + 1]);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
