/**
 * Opens the SQLite database: creates its folder on first run, turns on WAL, and applies the versioned
 * migrations recorded in PRAGMA user_version. better-sqlite3 is synchronous; our statements are tiny
 * indexed reads/writes, so they never hold the event loop for long (the slow work is in the scripts).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

/** The unique index that keeps a second unfinished operation off an instance (same name in both stores). */
export const IN_FLIGHT_INDEX = 'operations_one_in_flight_per_instance';

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
  // 2: operations (the lifecycle engine's audit trail) and idempotency keys.
  `CREATE TABLE operations (
     row_id          INTEGER PRIMARY KEY AUTOINCREMENT,
     id              TEXT NOT NULL UNIQUE,
     kind            TEXT NOT NULL CHECK (kind IN ('create', 'start', 'stop', 'terminate', 'sync')),
     instance_id     TEXT,
     client_token    TEXT,
     idempotency_key TEXT,
     status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'interrupted')),
     exit_code       INTEGER,
     error_code      TEXT,
     error_message   TEXT,
     stderr_tail     TEXT,
     note            TEXT,
     result          TEXT,
     request_id      TEXT,
     actor           TEXT,
     client_address  TEXT,
     created_at      TEXT NOT NULL,
     started_at      TEXT,
     finished_at     TEXT,
     duration_ms     INTEGER
   );
   CREATE INDEX operations_by_instance ON operations (instance_id, row_id);
   CREATE INDEX operations_by_status ON operations (status, row_id);
   CREATE INDEX operations_by_actor ON operations (actor, row_id);
   CREATE TABLE idempotency_keys (
     scope           TEXT NOT NULL,
     key             TEXT NOT NULL,
     fingerprint     TEXT NOT NULL,
     operation_id    TEXT NOT NULL,
     response_status INTEGER,
     response_body   TEXT,
     response_location TEXT,
     created_at      TEXT NOT NULL,
     PRIMARY KEY (scope, key)
   );
   CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);`,
  // 3: records are never deleted, so most rows become history. Without this the default list (live
  // instances, newest first) stepped over every terminated row to fill a page: its cost grew with
  // history (bench/list-vs-history.ts). The partial index holds only live rows.
  `CREATE INDEX instances_live ON instances (row_id) WHERE instance_id IS NOT NULL AND state <> 'terminated';`,
  // 4: scripts lead their own process group, so one can outlive a server that was killed. The group of the
  // script an operation is running is kept on the operation while it runs, so that start-up finds such a
  // script and waits for it (or stops it) before judging what it did. Launches are looked up by client token.
  `ALTER TABLE operations ADD COLUMN script_pgid INTEGER;
   CREATE INDEX operations_by_client_token ON operations (client_token, row_id) WHERE client_token IS NOT NULL;`,
  // 5: one changing operation per instance, held by the database rather than by a server's memory, so that it
  // also holds between replicas sharing one PostgreSQL (same history there). An older database can hold two
  // unfinished operations on one instance only when its server died between them; start-up would interrupt
  // both anyway, so all but the newest are interrupted here first.
  `UPDATE operations SET status = 'interrupted', finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
          note = 'interrupted when the schema began to allow one unfinished operation per instance'
    WHERE status IN ('queued', 'running') AND instance_id IS NOT NULL
      AND row_id NOT IN (SELECT MAX(row_id) FROM operations
                          WHERE status IN ('queued', 'running') AND instance_id IS NOT NULL GROUP BY instance_id);
   CREATE UNIQUE INDEX ${IN_FLIGHT_INDEX} ON operations (instance_id)
    WHERE instance_id IS NOT NULL AND status IN ('queued', 'running');`,
  // 6: which server runs an operation, and the servers sharing the database with the lease each renews, so
  // that the operations of one that died are taken over by another (PostgreSQL; SQLite has one server).
  `ALTER TABLE operations ADD COLUMN owner TEXT;
   CREATE INDEX operations_unfinished_by_owner ON operations (owner) WHERE status IN ('queued', 'running');
   CREATE TABLE replicas (
     id           TEXT PRIMARY KEY,
     host         TEXT NOT NULL,
     pid          INTEGER NOT NULL,
     url          TEXT,
     started_at   TEXT NOT NULL,
     heartbeat_at TEXT NOT NULL
   );`,
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
