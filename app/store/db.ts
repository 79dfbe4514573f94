/**
 * Opens the SQLite database: creates its folder on first run, turns on WAL, and applies the versioned
 * migrations recorded in PRAGMA user_version. better-sqlite3 is synchronous; our statements are tiny
 * indexed reads/writes, so they never hold the event loop for long (the slow work is in the scripts).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

/** Append only: never edit a migration that has shipped; add the next one. Index + 1 = user_version. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE instances (
     row_id            INTEGER PRIMARY KEY AUTOINCREMENT,
     instance_id       TEXT UNIQUE,
     client_token      TEXT NOT NULL UNIQUE,
     launch_status     TEXT NOT NULL CHECK (launch_status IN ('launching', 'launched', 'failed', 'unknown')),
     name              TEXT NOT NULL,
     state             TEXT NOT NULL CHECK (state IN
                         ('pending', 'running', 'stopping', 'stopped', 'shutting-down', 'terminated', 'failed')),
     public_ip         TEXT,
     private_ip        TEXT,
     ami               TEXT NOT NULL,
     instance_type     TEXT NOT NULL,
     storage_gb        INTEGER,
     key_name          TEXT,
     security_group_id TEXT,
     login_user        TEXT NOT NULL,
     launch_time       TEXT,
     last_error        TEXT,
     created_at        TEXT NOT NULL,
     updated_at        TEXT NOT NULL
   );
   CREATE INDEX instances_by_state ON instances (state, row_id);
   CREATE INDEX instances_by_name ON instances (name, row_id);`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(
      `database schema version ${current} is newer than this build knows (${MIGRATIONS.length}); refusing to run`,
    );
  }
  for (let version = current; version < MIGRATIONS.length; version += 1) {
    const sql = MIGRATIONS[version] as string;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
}

export function openDatabase(file: string): Db {
  if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  if (file !== ':memory:') db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  migrate(db);
  return db;
}
